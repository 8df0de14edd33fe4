"""Customer feedback: complaints with an SLA, CSAT/NPS surveys, staff callback tasks."""
