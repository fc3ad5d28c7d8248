package sim

import (
	"encoding/json"
	"strconv"
)

// encode writes the rows as the device's data payload: one JSON object for one row, an array
// of objects for more. Keys are device_id, ts (Unix milliseconds), then the fields in scenario
// order, so the bytes depend only on the values.
func (st *Stream) encode(rows []Row, ts []int64) []byte {
	var b []byte
	if len(rows) > 1 {
		b = append(b, '[')
	}
	id, _ := json.Marshal(st.id)
	for i, r := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"device_id":`...)
		b = append(b, id...)
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, ts[i], 10)
		for k, v := range r {
			b = append(b, ',')
			name, _ := json.Marshal(st.names[k])
			b = append(b, name...)
			b = append(b, ':')
			b = appendValue(b, v)
		}
		b = append(b, '}')
	}
	if len(rows) > 1 {
		b = append(b, ']')
	}
	return b
}

func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case float64:
		return strconv.AppendFloat(b, x, 'f', -1, 64)
	case string:
		s, _ := json.Marshal(x)
		return append(b, s...)
	default:
		s, _ := json.Marshal(x)
		return append(b, s...)
	}
}
