package rows_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
)

// Example reads JSONL against a contract and prints each violation.
func Example() {
	s, err := contract.Parse([]byte(`{"fields":[
		{"name":"temp","type":"number","constraints":{"maximum":100}},
		{"name":"mode","constraints":{"enum":["auto","manual"]}}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	in := `{"temp":21.5,"mode":"auto"}
{"temp":120,"mode":"auto"}
{"temp":"warm","mode":"off"}
{"temp":
`
	r := rows.NewJSONL(strings.NewReader(in), s)
	v := contract.NewValidator(s, contract.Options{})
	out := make([]contract.Value, len(s.Fields)) // typed row, reused
	var row contract.RawRow
	var viol []contract.Violation
	for {
		if err := r.Next(&row); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			fmt.Println(err)
			return
		}
		var ok bool
		viol, ok = v.Validate(&row, out, viol[:0])
		if ok {
			fmt.Printf("row %d ok: temp=%v\n", row.Num, out[0].Num)
		}
		for _, x := range viol {
			fmt.Printf("row %d: %s %s %q\n", x.Row, x.Field, x.Rule, x.Value)
		}
	}
	// Output:
	// row 1 ok: temp=21.5
	// row 2: temp maximum "120"
	// row 3: temp type "warm"
	// row 3: mode enum "off"
	// row 4:  parse "{\"temp\":"
}
