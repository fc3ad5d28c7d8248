package outputs

import (
	"math"
	"sort"
	"strconv"

	"github.com/driftline/driftline/shared/contract"
)

// MaxClasses bounds the classes an Accumulator counts separately for F1; further classes share
// one bucket (OtherClass).
const MaxClasses = 1024

// OtherClass is the bucket of classes beyond MaxClasses.
const OtherClass = "\x00other"

// Performance is what a set of (prediction, label) pairs scored. Only the task's metrics are set.
type Performance struct {
	Task string `json:"task"`
	// Labels is the number of pairs.
	Labels int64 `json:"labels"`
	// Accuracy is the share of correct predictions; F1 the macro average of the per-class F1
	// over every class seen as a prediction or a label (classification).
	Accuracy *float64 `json:"accuracy,omitempty"`
	F1       *float64 `json:"f1,omitempty"`
	// MAE and RMSE are the mean absolute and root mean squared error (regression).
	MAE  *float64 `json:"mae,omitempty"`
	RMSE *float64 `json:"rmse,omitempty"`
}

// Value returns the metric's value; ok is false when it is not set (no pairs, other task).
func (p Performance) Value(metric string) (float64, bool) {
	var v *float64
	switch metric {
	case contract.MetricAccuracy:
		v = p.Accuracy
	case contract.MetricF1:
		v = p.F1
	case contract.MetricMAE:
		v = p.MAE
	case contract.MetricRMSE:
		v = p.RMSE
	}
	if v == nil {
		return 0, false
	}
	return *v, true
}

// Accumulator scores (prediction, label) pairs one at a time, in memory proportional to the
// number of classes. Not safe for concurrent use.
type Accumulator struct {
	task         string
	n, correct   int64
	tp, fp, fn   map[string]int64
	absSum, sqSq float64
}

// NewAccumulator returns an empty accumulator for task (contract.Task*).
func NewAccumulator(task string) *Accumulator {
	a := &Accumulator{task: task}
	if task == contract.TaskClassification {
		a.tp, a.fp, a.fn = map[string]int64{}, map[string]int64{}, map[string]int64{}
	}
	return a
}

// ClassOf is the class name of a classification value: the string, the integer or the boolean
// as text.
func ClassOf(v contract.Value) string {
	switch v.Kind {
	case contract.KindString:
		return v.Str
	case contract.KindBool:
		return strconv.FormatBool(v.Bool)
	case contract.KindNumber:
		return strconv.FormatFloat(v.Num, 'g', -1, 64)
	}
	return ""
}

// Add scores one pair; null values are skipped (they cannot be judged) and reported false.
func (a *Accumulator) Add(pred, label contract.Value) bool {
	if pred.IsNull() || label.IsNull() {
		return false
	}
	if a.task == contract.TaskRegression {
		a.AddNumber(pred.Num, label.Num)
		return true
	}
	a.AddClass(ClassOf(pred), ClassOf(label))
	return true
}

// AddNumber scores one regression pair.
func (a *Accumulator) AddNumber(pred, label float64) {
	a.n++
	d := pred - label
	a.absSum += math.Abs(d)
	a.sqSq += d * d
}

// AddClass scores one classification pair.
func (a *Accumulator) AddClass(pred, label string) {
	a.n++
	pred, label = a.bucket(pred), a.bucket(label)
	if pred == label {
		a.correct++
		a.tp[pred]++
		return
	}
	a.fp[pred]++
	a.fn[label]++
}

func (a *Accumulator) bucket(c string) string {
	if _, ok := a.tp[c]; ok {
		return c
	}
	if _, ok := a.fp[c]; ok {
		return c
	}
	if _, ok := a.fn[c]; ok {
		return c
	}
	if a.classes() >= MaxClasses {
		return OtherClass
	}
	a.tp[c] += 0 // register the class
	return c
}

func (a *Accumulator) classes() int { return len(a.tp) }

// Len is the number of pairs scored.
func (a *Accumulator) Len() int64 { return a.n }

// Result returns the metrics of the pairs so far (no metric when there is none).
func (a *Accumulator) Result() Performance {
	p := Performance{Task: a.task, Labels: a.n}
	if a.n == 0 {
		return p
	}
	n := float64(a.n)
	if a.task == contract.TaskRegression {
		mae, rmse := a.absSum/n, math.Sqrt(a.sqSq/n)
		p.MAE, p.RMSE = &mae, &rmse
		return p
	}
	acc := float64(a.correct) / n
	classes := make([]string, 0, len(a.tp))
	for c := range a.tp {
		classes = append(classes, c)
	}
	sort.Strings(classes) // a fixed order: the same sum everywhere
	var sum float64
	for _, c := range classes {
		tp := float64(a.tp[c])
		den := 2*tp + float64(a.fp[c]) + float64(a.fn[c])
		if den > 0 {
			sum += 2 * tp / den
		}
	}
	f1 := sum / float64(len(classes))
	p.Accuracy, p.F1 = &acc, &f1
	return p
}
