package broker

import (
	"bufio"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// DeviceWriteKinds are the topic kinds under "{prefix}/dev/{id}/" that WriteMosquittoACL lets a
// device publish: every device-to-hub kind of SPEC section 3, and drift/{feature}. Mosquitto's
// ACL cannot forbid only the writing of a topic it lets a user read, so for Mosquitto the
// device's write rights are this list rather than "everything but desired and chunk".
var DeviceWriteKinds = []string{"status", "heartbeat", "data", "validation", "drift", "drift/+", "profile", "reported", "fetch",
	"prediction_drift", "performance", "prediction_profile", "sample", "sample_part"}

// mosquittoIterations is the PBKDF2 iteration count; 101 is mosquitto_passwd's default. Device
// and API tokens are long random strings, so stretching adds little, and every connect pays it.
const mosquittoIterations = 101

// mosquittoSaltLen is the salt length mosquitto_passwd 2.0 uses.
const mosquittoSaltLen = 12

// Cred is one user of a Mosquitto password file.
type Cred struct {
	User     string
	Password string
}

// WriteMosquittoACL writes a Mosquitto 2.0 acl_file with the embedded broker's rules: hubUser
// may read and write everything; each viewer may read "{prefix}/#"; each device may read its own
// subtree "{prefix}/dev/{id}/#" and write the kinds in DeviceWriteKinds there (never desired or
// chunk). Rules are written per user, not as %u patterns: Mosquitto applies a pattern to every
// user, so a viewer or hub user named like a device would gain that device's rights. The file
// must be rendered again (and Mosquitto sent SIGHUP) when devices or viewers change, as the
// password file must anyway.
func WriteMosquittoACL(w io.Writer, prefix string, devices []string, viewers []string, hubUser string) error {
	return WriteMosquittoACLModels(w, prefix, devices, nil, viewers, hubUser)
}

// WriteMosquittoACLModels is WriteMosquittoACL that also lets each device read the shared chunk
// topic "{prefix}/model/{name}/chunk" of every model models[device] names: the models its desired
// state names when the file is rendered (broker.ModelAuthorizer decides the same live for the
// embedded broker). A device whose desired state names a model after the rendering is not
// delivered that topic until the file is rendered again; its agent's requests then time out once
// and are answered on its own chunk topic, as for an agent without the shared topic.
func WriteMosquittoACLModels(w io.Writer, prefix string, devices []string, models map[string][]string, viewers []string, hubUser string) error {
	r, err := newRules(prefix)
	if err != nil {
		return err
	}
	if err := checkUser(hubUser, false); err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# Driftline access control for Mosquitto 2.0, rendered by hub/broker.WriteMosquittoACL.\n")
	fmt.Fprintf(bw, "# Same rules as the hub's embedded broker (SPEC section 3). Do not edit by hand.\n\n")
	fmt.Fprintf(bw, "# The hub: everything.\nuser %s\ntopic readwrite #\n", hubUser)
	for _, v := range viewers {
		if err := checkUser(v, false); err != nil {
			return err
		}
		fmt.Fprintf(bw, "\n# Viewer: subscribe under %s/, publish nothing.\nuser %s\ntopic read %s/#\n", r.prefix, v, r.prefix)
	}
	for _, d := range devices {
		if err := checkUser(d, false); err != nil {
			return err
		}
		if !validLevel(d) || strings.ContainsAny(d, " \t") {
			return fmt.Errorf("%w: device id %q is not one topic level", ErrBadUser, d)
		}
		base := r.devBase + d + "/"
		fmt.Fprintf(bw, "\n# Device %s: its own subtree; never desired or chunk.\nuser %s\ntopic read %s#\n", d, d, base)
		for _, k := range DeviceWriteKinds {
			fmt.Fprintf(bw, "topic write %s%s\n", base, k)
		}
		for _, m := range models[d] {
			if !validLevel(m) || strings.ContainsAny(m, " \t") {
				return fmt.Errorf("%w: model %q is not one topic level", ErrBadUser, m)
			}
			fmt.Fprintf(bw, "topic read %s%s%s\n", r.modelBase, m, modelChunkLeaf)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write mosquitto acl: %w", err)
	}
	return nil
}

// WriteMosquittoPasswd writes a Mosquitto 2.0 password_file: one "user:$7$ITER$SALT$HASH" line
// per credential, the PBKDF2-HMAC-SHA512 format mosquitto_passwd writes, with a fresh random
// salt for each line.
func WriteMosquittoPasswd(w io.Writer, creds []Cred) error {
	bw := bufio.NewWriter(w)
	for _, c := range creds {
		if err := checkUser(c.User, true); err != nil {
			return err
		}
		salt := make([]byte, mosquittoSaltLen)
		if _, err := rand.Read(salt); err != nil {
			return fmt.Errorf("mosquitto salt: %w", err)
		}
		line, err := mosquittoHash(c.Password, salt, mosquittoIterations)
		if err != nil {
			return err
		}
		fmt.Fprintf(bw, "%s:%s\n", c.User, line)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write mosquitto passwd: %w", err)
	}
	return nil
}

// mosquittoHash returns "$7$ITER$SALT$HASH" for password, as mosquitto 2.0 stores it.
func mosquittoHash(password string, salt []byte, iter int) (string, error) {
	sum, err := pbkdf2.Key(sha512.New, password, salt, iter, sha512.Size)
	if err != nil {
		return "", fmt.Errorf("mosquitto hash: %w", err)
	}
	enc := base64.StdEncoding
	return fmt.Sprintf("$7$%d$%s$%s", iter, enc.EncodeToString(salt), enc.EncodeToString(sum)), nil
}

// checkUser refuses names that would break or bend the line-based Mosquitto files.
func checkUser(u string, passwd bool) error {
	switch {
	case u == "":
		return fmt.Errorf("%w: empty", ErrBadUser)
	case strings.TrimSpace(u) != u:
		return fmt.Errorf("%w: %q has surrounding spaces", ErrBadUser, u)
	case strings.IndexFunc(u, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("%w: %q has control characters", ErrBadUser, u)
	case passwd && strings.Contains(u, ":"):
		return fmt.Errorf("%w: %q contains ':'", ErrBadUser, u)
	}
	return nil
}
