// Package rollout holds end-to-end tests of rollouts with real agents: a real hub node
// (Raft store, API, rollout controller, embedded MQTT broker) and the agent's own code run
// in-process, each agent with its own identity, MQTT connection and model directory, fed data
// on its data topic through the pipeline that `driftline-agent run` attaches. It has no
// non-test code; hub/rollout/controller_test.go covers the controller with simulated reports.
package rollout
