package drift

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

// nabReading is one row of the NAB machine temperature series.
type nabReading struct {
	at    time.Time
	value float64
}

const nabLayout = "2006-01-02 15:04:05"

func loadNAB(t testing.TB) ([]nabReading, [][2]time.Time) {
	t.Helper()
	f, err := os.Open("testdata/nab/machine_temperature_system_failure.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []nabReading
	for i, r := range recs[1:] {
		at, err := time.Parse(nabLayout, r[0])
		if err != nil {
			t.Fatalf("row %d: %v", i+2, err)
		}
		v, err := strconv.ParseFloat(r[1], 64)
		if err != nil {
			t.Fatalf("row %d: %v", i+2, err)
		}
		out = append(out, nabReading{at, v})
	}
	b, err := os.ReadFile("testdata/nab/windows.json")
	if err != nil {
		t.Fatal(err)
	}
	var labels map[string][][2]string
	if err := json.Unmarshal(b, &labels); err != nil {
		t.Fatal(err)
	}
	var windows [][2]time.Time
	for _, w := range labels["realKnownCause/machine_temperature_system_failure.csv"] {
		a, err1 := time.Parse(nabLayout+".000000", w[0])
		z, err2 := time.Parse(nabLayout+".000000", w[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("window %v: %v %v", w, err1, err2)
		}
		windows = append(windows, [2]time.Time{a, z})
	}
	return out, windows
}

var nabCols = []profile.Column{{Name: "value", Kind: profile.Numeric}}

func nabProfile(t testing.TB, rs []nabReading) *profile.Profile {
	t.Helper()
	p, err := profile.New(nabCols)
	if err != nil {
		t.Fatal(err)
	}
	row := make([]contract.Value, 1)
	for _, r := range rs {
		row[0] = contract.Value{Kind: contract.KindNumber, Num: r.value}
		if err := p.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// nabSplit cuts the series into the reference (the first 14 days) and the later days, each a
// calendar day (UTC) of readings.
func nabSplit(t testing.TB) (ref []nabReading, refDays, days [][]nabReading, windows [][2]time.Time) {
	all, windows := loadNAB(t)
	end := all[0].at.Add(14 * 24 * time.Hour)
	i := slices.IndexFunc(all, func(r nabReading) bool { return !r.at.Before(end) })
	ref = all[:i]
	byDay := func(rs []nabReading) [][]nabReading {
		var out [][]nabReading
		for len(rs) > 0 {
			dayEnd := rs[0].at.Truncate(24 * time.Hour).Add(24 * time.Hour)
			j := slices.IndexFunc(rs, func(r nabReading) bool { return !r.at.Before(dayEnd) })
			if j < 0 {
				j = len(rs)
			}
			out = append(out, rs[:j])
			rs = rs[j:]
		}
		return out
	}
	return ref, byDay(ref), byDay(all[i:]), windows
}

// inAnomaly reports whether most of a day's readings lie inside a labelled anomaly window.
func inAnomaly(day []nabReading, windows [][2]time.Time) bool {
	in := 0
	for _, r := range day {
		for _, w := range windows {
			if !r.at.Before(w[0]) && !r.at.After(w[1]) {
				in++
				break
			}
		}
	}
	return 2*in > len(day)
}

func TestNABAnomalyWindowDrifts(t *testing.T) {
	ref, _, _, windows := nabSplit(t)
	all, _ := loadNAB(t)
	// One day inside the last labelled window, the lead-up to the catastrophic failure.
	from := windows[3][0].Add(12 * time.Hour)
	var win []nabReading
	for _, r := range all {
		if !r.at.Before(from) && r.at.Before(from.Add(24*time.Hour)) {
			win = append(win, r)
		}
	}
	rep, err := Compare(nabProfile(t, ref), nabProfile(t, win), Options{})
	if err != nil {
		t.Fatal(err)
	}
	fr := rep.Features["value"]
	t.Logf("reference %d rows, window %d rows from %s: %s=%.3f threshold %.2f ks=%.3f psi=%.3f",
		len(ref), len(win), from.Format(time.DateTime), fr.Method, fr.Score, fr.Threshold, *fr.KS, *fr.PSI)
	if !rep.DatasetDrift || !fr.Drift || fr.Method != Wasserstein {
		t.Fatalf("window inside a labelled anomaly did not drift: %+v", fr)
	}
}

// nabFlagRates returns, per method of setting thresholds, the share of anomalous days and of
// other days flagged. It is the measurement quoted in DESIGN.md.
func nabFlagRates(t testing.TB, factor float64) (lines []string, fixedIn, fixedOut, calIn, calOut float64, threshold float64) {
	ref, refDays, days, windows := nabSplit(t)
	refProf := nabProfile(t, ref)
	var winProfs []*profile.Profile
	for _, d := range refDays {
		if len(d) >= 144 { // calibrate on whole-ish days only
			winProfs = append(winProfs, nabProfile(t, d))
		}
	}
	th, err := Calibrate(winProfs, refProf, CalibrateOptions{Factor: factor})
	if err != nil {
		t.Fatal(err)
	}
	calRef := refProf.Clone()
	if err := Apply(calRef, th); err != nil {
		t.Fatal(err)
	}
	threshold = th["value"].Value
	var nIn, nOut, fIn, fOut, cIn, cOut int
	for _, d := range days {
		if len(d) < 144 {
			continue
		}
		cur := nabProfile(t, d)
		fixed, err := Compare(refProf, cur, Options{})
		if err != nil {
			t.Fatal(err)
		}
		cal, err := Compare(calRef, cur, Options{})
		if err != nil {
			t.Fatal(err)
		}
		anom := inAnomaly(d, windows)
		fr := cal.Features["value"]
		lines = append(lines, fmt.Sprintf("%s anomaly=%-5v rows=%3d W/sd=%.3f fixed=%-5v calibrated=%v",
			d[0].at.Format(time.DateOnly), anom, len(d), fr.Score, fixed.DatasetDrift, cal.DatasetDrift))
		if anom {
			nIn++
			fIn += int(b2f(fixed.DatasetDrift))
			cIn += int(b2f(cal.DatasetDrift))
		} else {
			nOut++
			fOut += int(b2f(fixed.DatasetDrift))
			cOut += int(b2f(cal.DatasetDrift))
		}
	}
	lines = append(lines, fmt.Sprintf("anomalous days %d, other days %d; calibrated threshold %.3f from %d reference days",
		nIn, nOut, threshold, len(winProfs)))
	return lines, float64(fIn) / float64(nIn), float64(fOut) / float64(nOut),
		float64(cIn) / float64(nIn), float64(cOut) / float64(nOut), threshold
}

func TestNABFixedVersusCalibrated(t *testing.T) {
	for _, factor := range []float64{1, 2} {
		_, _, _, in, out, th := nabFlagRates(t, factor)
		t.Logf("factor %.0f: threshold %.3f flags %.0f%% of anomalous days, %.0f%% of other days", factor, th, 100*in, 100*out)
	}
	lines, fixedIn, fixedOut, calIn, calOut, threshold := nabFlagRates(t, DefaultFactor)
	for _, l := range lines {
		t.Log(l)
	}
	t.Logf("flagged: fixed thresholds %.0f%% of anomalous days, %.0f%% of other days; calibrated (factor 3) %.0f%% / %.0f%%",
		100*fixedIn, 100*fixedOut, 100*calIn, 100*calOut)
	if threshold <= Wasserstein.DefaultThreshold() {
		t.Errorf("calibrated threshold %.3f not above the default on a non-stationary series", threshold)
	}
	if calOut >= fixedOut {
		t.Errorf("calibration did not lower false alarms: %.2f vs %.2f", calOut, fixedOut)
	}
	if calIn < calOut {
		t.Errorf("calibrated thresholds flag anomalous days (%.2f) less than others (%.2f)", calIn, calOut)
	}
}
