package artifact

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
)

// approvalContext prefixes every approval signature that binds no output reference (see
// SignStatement); approvalOutputContext those that do (Approval.OutputDigest set). Approvals of
// versions without an output reference are signed and verified exactly as before the output
// digest was bound, so their stored signatures keep verifying (docs/upgrading.md).
const (
	approvalContext       = "driftline approval v1\x00"
	approvalOutputContext = "driftline approval v2 outputs\x00"
)

// Approval is what an approval signature binds: which model version, which artifact (its
// manifest, which holds the whole file's digest and every chunk's), and the data contract and
// reference profile of the dataset version it was trained on, and the version's output
// reference (output contract, prediction profile, reference performance) when it has one.
// Swapping any of them (another contract, another profile, another output reference, another
// artifact under the same version) breaks the signature.
type Approval struct {
	Name           string
	Version        int
	ManifestDigest string
	ContractDigest string
	ProfileDigest  string
	Dataset        string
	DatasetVersion int
	// OutputDigest names the output reference ("" when the version has none). A signature
	// over an approval with it is made under another context than one without, so an
	// approval that binds no output reference never verifies for a desired entry naming one.
	OutputDigest string
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
	if a.OutputDigest != "" {
		b = str(a.OutputDigest)
	}
	return b
}

// context is the signing context of a: v1 without an output reference, v2 with one.
func (a Approval) context() string {
	if a.OutputDigest != "" {
		return approvalOutputContext
	}
	return approvalContext
}

// String names the approval for messages.
func (a Approval) String() string { return fmt.Sprintf("%s@%d", a.Name, a.Version) }

// SignApproval signs a with priv.
func SignApproval(priv ed25519.PrivateKey, a Approval) Signature {
	return SignStatement(priv, a.context(), a.Bytes())
}

// VerifyApproval checks sig over a against the keys of r; errors as KeyRing.Verify.
func (r KeyRing) VerifyApproval(a Approval, sig Signature) error {
	return r.VerifyStatement(a.context(), a.Bytes(), sig)
}
