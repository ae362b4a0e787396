// Package actions turns alerts into retrain and deploy requests to the CI a
// team already has: GitHub's repository_dispatch and workflow_dispatch,
// GitLab's pipeline trigger, Argo Workflows' submit, Airflow 2's dagRuns,
// and a generic webhook signed with HMAC-SHA256.
//
// It holds what does not need a running alertd, so tables can test it: the
// requests of each preset (Target.Build, Request.HTTP), the signature and
// its Verify helper for receivers, the guardrails (a cooldown per model and
// a daily budget, Guard.Check), schedules (Schedule.Slot) and the outcome
// of a verification (VerifyOutcome). Time is passed in; nothing here runs
// a goroutine, keeps state between calls or logs. alertd's internal/alertd
// wires it to the pipeline, the outbox and the API.
package actions
