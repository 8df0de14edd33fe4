"""Customer care between visits: greetings on birthdays, anniversaries and holidays, and
replenishment reminders. This package holds the date logic those rules share."""
