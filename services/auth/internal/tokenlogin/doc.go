// Package tokenlogin holds the end-to-end test of the loader's login to an
// OpenSRS target with per-mailbox tokens: the OMA stand-in (omafake)
// issues them, a real Dovecot accepts them in place of the password, the
// loader mints, stores, renews and uses them. It has no code of its own.
package tokenlogin
