package job

import (
	"strings"
	"testing"
)

func TestParseInventoryResolvesPasswordFilesAgainstItsDirectory(t *testing.T) {
	in := "source_user,target_user,source_password_file,target_password_file\n" +
		"alice@old.test,alice@new.test,pw/alice,/abs/alice\n" +
		"bob@old.test,bob@new.test\n"
	got, err := ParseInventory(strings.NewReader(in), "/etc/mf")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].SourcePasswordFile != "/etc/mf/pw/alice" || got[0].TargetPasswordFile != "/abs/alice" || got[1].SourcePasswordFile != "" {
		t.Errorf("got %+v", got)
	}
}

func TestParseInventoryRejectsBadRows(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"missing column", "source_user\nalice\n", "target_user"},
		{"empty user", "source_user,target_user\nalice,\n", "line 2"},
		{"duplicate", "source_user,target_user\na,b\na,c\n", "already listed on line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseInventory(strings.NewReader(tt.in), ".")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
