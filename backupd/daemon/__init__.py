"""The backupd service (`backupd daemon`): schedules per-target backups from persisted due times,
catches up missed runs in RPO order, serialises work per repository, handles SIGTERM/SIGHUP,
talks to systemd (sd_notify), exports metrics and sends alerts."""
