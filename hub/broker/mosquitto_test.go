package broker

import (
	"bytes"
	"sort"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

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
	if err := WriteMosquittoACLModels(&acl, DefaultPrefix, []string{userDevA, userDevB}, testModels, []string{userViewer}, userHub); err != nil {
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

// TestMosquittoReloadDisconnectsRemovedUser: with an external broker, deleting a device (or a
// token) takes effect when the files are rendered again without it and Mosquitto is sent
// SIGHUP: Mosquitto re-checks connected clients against the new password file and closes
// those whose credentials are gone (docs/operations.md relies on this).
func TestMosquittoReloadDisconnectsRemovedUser(t *testing.T) {
	render := func(devices ...string) mosquittotest.Files {
		creds := []Cred{{User: userHub, Password: testCreds[userHub]}}
		for _, d := range devices {
			creds = append(creds, Cred{User: d, Password: testCreds[d]})
		}
		var pw, acl bytes.Buffer
		if err := WriteMosquittoPasswd(&pw, creds); err != nil {
			t.Fatal(err)
		}
		if err := WriteMosquittoACL(&acl, DefaultPrefix, devices, nil, userHub); err != nil {
			t.Fatal(err)
		}
		return mosquittotest.Files{Passwd: pw.Bytes(), ACL: acl.Bytes()}
	}
	b := mosquittotest.Start(t, "the external-broker reload test", render(userDevA, userDevB), userHub, testCreds[userHub])
	lost := make(chan error, 1)
	mustConnect(t, clientOpts(b.URL(), userDevA, userDevA).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	other := mustConnect(t, clientOpts(b.URL(), userDevB, userDevB))
	b.Reload(render(userDevB))
	select {
	case err := <-lost:
		t.Logf("removed device disconnected: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("a device removed from the password file is still connected after SIGHUP")
	}
	if !other.IsConnectionOpen() {
		t.Fatal("the reload disconnected a device that is still in the files")
	}
}

// TestMosquittoUsernameAsClientID: the device listener of deploy/mosquitto/mosquitto.conf sets
// use_username_as_clientid, which binds a session to its user: a device that connects with
// another device's client id gets a session of its own and cannot cut the other off.
func TestMosquittoUsernameAsClientID(t *testing.T) {
	var pw, acl bytes.Buffer
	creds := []Cred{{User: userHub, Password: testCreds[userHub]}, {User: userDevA, Password: testCreds[userDevA]}, {User: userDevB, Password: testCreds[userDevB]}}
	if err := WriteMosquittoPasswd(&pw, creds); err != nil {
		t.Fatal(err)
	}
	if err := WriteMosquittoACL(&acl, DefaultPrefix, []string{userDevA, userDevB}, nil, userHub); err != nil {
		t.Fatal(err)
	}
	b := mosquittotest.Start(t, "the external-broker client-id test",
		mosquittotest.Files{Passwd: pw.Bytes(), ACL: acl.Bytes(), Listener: "use_username_as_clientid true\n"}, userHub, testCreds[userHub])
	lost := make(chan error, 1)
	mustConnect(t, clientOpts(b.URL(), userDevA, userDevA).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	squatter := mustConnect(t, clientOpts(b.URL(), userDevA, userDevB).SetCleanSession(false))
	rec := &recorder{}
	subscribe(t, squatter, "dl/v1/dev/dev-b/desired", 1, rec.handle)
	select {
	case err := <-lost:
		t.Fatalf("device B, connecting with device A's client id, cut device A off: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
}
