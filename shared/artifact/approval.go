package artifact

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
)

// approvalContext prefixes every approval signature (see SignStatement).
const approvalContext = "driftline approval v1\x00"

// Approval is what an approval signature binds: which model version, which artifact (its
// manifest, which holds the whole file's digest and every chunk's), and the data contract and
// reference profile of the dataset version it was trained on. Swapping any of them (another
// contract, another profile, another artifact under the same version) breaks the signature.
type Approval struct {
	Name           string
	Version        int
	ManifestDigest string
	ContractDigest string
	ProfileDigest  string
	Dataset        string
	DatasetVersion int
}

// Bytes returns the approval's signed form: every field length-prefixed in a fixed order, so
// no two different approvals encode alike.
func (a Approval) Bytes() []byte {
	b := make([]byte, 0, 256)
	str := func(s string) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		return append(b, s...)
	}
	b = str(a.Name)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Version))
	b = str(a.ManifestDigest)
	b = str(a.ContractDigest)
	b = str(a.ProfileDigest)
	b = str(a.Dataset)
	b = binary.BigEndian.AppendUint64(b, uint64(a.DatasetVersion))
	return b
}

// String names the approval for messages.
func (a Approval) String() string { return fmt.Sprintf("%s@%d", a.Name, a.Version) }

// SignApproval signs a with priv.
func SignApproval(priv ed25519.PrivateKey, a Approval) Signature {
	return SignStatement(priv, approvalContext, a.Bytes())
}

// VerifyApproval checks sig over a against the keys of r; errors as KeyRing.Verify.
func (r KeyRing) VerifyApproval(a Approval, sig Signature) error {
	return r.VerifyStatement(approvalContext, a.Bytes(), sig)
}
