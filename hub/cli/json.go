package cli

import "encoding/json"

// jsonMarshal encodes a request part; a failure is a bug in the caller's value, reported as usage.
func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, usagef("encode %T: %v", v, err)
	}
	return b, nil
}
