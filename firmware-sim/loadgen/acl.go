package loadgen

import (
	"bufio"
	"fmt"
	"io"

	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/shared/wire"
)

// WriteLoadACL appends to a Mosquitto acl_file the rules of the load tool's users: each may
// read every device's desired, ack and chunk topics and every model's shared chunk topic, and
// write every device's report kinds (broker.DeviceWriteKinds) under "{prefix}/dev/+/". A real
// device's rules (broker.WriteMosquittoACL) name its own id instead of "+": one load user
// speaks for many devices, so the broker's ACL cannot keep them apart, and the hub's check that
// a payload's device id matches its topic is what still holds.
func WriteLoadACL(w io.Writer, t wire.Topics, users []string) error {
	bw := bufio.NewWriter(w)
	base := t.Prefix() + "/dev/+/"
	for _, u := range users {
		fmt.Fprintf(bw, "\n# Load-test user %s (firmware-sim/loadgen): speaks for many devices; never for production.\nuser %s\n", u, u)
		for _, k := range []wire.Kind{wire.KindDesired, wire.KindAck, wire.KindChunk} {
			fmt.Fprintf(bw, "topic read %s%s\n", base, k.String())
		}
		fmt.Fprintf(bw, "topic read %s/model/+/chunk\n", t.Prefix())
		for _, k := range broker.DeviceWriteKinds {
			fmt.Fprintf(bw, "topic write %s%s\n", base, k)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write load acl: %w", err)
	}
	return nil
}
