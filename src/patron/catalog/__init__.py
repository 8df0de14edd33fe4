"""Products and categories, with replenishment cycles for timely reminders."""
