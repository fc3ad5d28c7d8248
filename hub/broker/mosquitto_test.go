package broker

import (
	"bytes"
	"sort"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/broker/mosquittotest"
)

// startMosquitto runs Mosquitto with the password and ACL files rendered by this package for the
// tests' users, and returns its URL once it accepts the hub user.
func startMosquitto(t *testing.T) string {
	users := make([]string, 0, len(testCreds))
	for u := range testCreds {
		users = append(users, u)
	}
	sort.Strings(users)
	creds := make([]Cred, 0, len(users))
	for _, u := range users {
		creds = append(creds, Cred{User: u, Password: testCreds[u]})
	}
	var pw, acl bytes.Buffer
	if err := WriteMosquittoPasswd(&pw, creds); err != nil {
		t.Fatal(err)
	}
	if err := WriteMosquittoACL(&acl, DefaultPrefix, []string{userDevA, userDevB}, []string{userViewer}, userHub); err != nil {
		t.Fatal(err)
	}
	b := mosquittotest.Start(t, "the external-broker ACL tests", mosquittotest.Files{Passwd: pw.Bytes(), ACL: acl.Bytes()},
		userHub, testCreds[userHub])
	return b.URL()
}

// TestMosquittoACL runs the embedded broker's ACL cases against a real Mosquitto configured with
// the files this package renders.
func TestMosquittoACL(t *testing.T) {
	url := startMosquitto(t)
	runACLSuite(t, url, false)
}

func TestMosquittoPasswdMatchesMosquittoPasswdTool(t *testing.T) {
	// Reference line written by mosquitto_passwd 2.0.11 (`mosquitto_passwd -c -b f dev-1 s3cret`).
	const ref = "$7$101$i4TfTEKZoPquO0/Q$RpsWIxFdUce5zr0l/9vV43NtaGvPTwGCH4F9OchXcxUnyPq30llqRmEf+sTegs+2CZdaHFNARtRnA09vTh7MpQ=="
	parts := strings.Split(ref, "$")
	salt, err := base64Std(parts[3])
	if err != nil {
		t.Fatal(err)
	}
	got, err := mosquittoHash("s3cret", salt, 101)
	if err != nil {
		t.Fatal(err)
	}
	if got != ref {
		t.Fatalf("hash:\n got %s\nwant %s", got, ref)
	}
	if other, _ := mosquittoHash("s3creT", salt, 101); other == ref {
		t.Fatal("a different password gave the same hash")
	}
}
