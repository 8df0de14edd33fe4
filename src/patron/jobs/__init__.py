"""The worker: consumes the outbox, delivers messages and runs the daily schedules."""
