package unixcrypt

import "crypto/md5"

// md5Crypt is FreeBSD's MD5-based crypt: 1000 rounds of MD5 over the
// password, salt and the previous digest, salt of at most 8 bytes.
func md5Crypt(password []byte, setting string) string {
	salt := []byte(cutSalt(setting[len(PrefixMD5):], 8))

	alt := md5.New()
	alt.Write(password)
	alt.Write(salt)
	alt.Write(password)
	final := alt.Sum(nil)

	ctx := md5.New()
	ctx.Write(password)
	ctx.Write([]byte(PrefixMD5))
	ctx.Write(salt)
	for n := len(password); n > 0; n -= 16 {
		ctx.Write(final[:min(n, 16)])
	}
	// The original clears final first, so a set bit adds a NUL byte.
	for i := len(password); i > 0; i >>= 1 {
		if i&1 != 0 {
			ctx.Write([]byte{0})
		} else {
			ctx.Write(password[:1])
		}
	}
	final = ctx.Sum(nil)

	for i := 0; i < 1000; i++ {
		r := md5.New()
		if i&1 != 0 {
			r.Write(password)
		} else {
			r.Write(final)
		}
		if i%3 != 0 {
			r.Write(salt)
		}
		if i%7 != 0 {
			r.Write(password)
		}
		if i&1 != 0 {
			r.Write(final)
		} else {
			r.Write(password)
		}
		final = r.Sum(final[:0])
	}

	out := make([]byte, 0, len(PrefixMD5)+len(salt)+1+22)
	out = append(out, PrefixMD5...)
	out = append(out, salt...)
	out = append(out, '$')
	for _, t := range [][3]int{{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}} {
		out = encode24(out, final[t[0]], final[t[1]], final[t[2]], 4)
	}
	out = encode24(out, 0, 0, final[11], 2)
	return string(out)
}
