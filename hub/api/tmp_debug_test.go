package api_test

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"os"
	"testing"
	"time"
)

func TestTmpRunEventHang(t *testing.T) {
	h := startHub(t, nil)
	ex, _ := os.ReadFile("testdata/openlineage/example_full_event.json")
	h.client = &http.Client{Timeout: 5 * time.Second}
	rng := rand.New(rand.NewPCG(3, 4))
	start := time.Now()
	for i := 0; i < 3000; i++ {
		b := bytes.Clone(ex)
		for j := 0; j < 1+rng.IntN(4); j++ {
			b[rng.IntN(len(b))] = byte(rng.IntN(256))
		}
		t0 := time.Now()
		req, _ := http.NewRequest("POST", h.url+"/api/v1/openlineage", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+h.admin)
		req.Header.Set("Content-Type", "application/json")
		res, err := h.client.Do(req)
		if err != nil {
			t.Fatalf("%d: %v after %v\n%s", i, err, time.Since(t0), b)
		}
		res.Body.Close()
		if res.StatusCode >= 500 {
			t.Fatalf("%d: %d", i, res.StatusCode)
		}
	}
	t.Logf("3000 in %v", time.Since(start))
}
