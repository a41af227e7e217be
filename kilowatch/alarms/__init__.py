"""Alarms: device and rule alarms, their events, alert rules and alarm e-mails."""
