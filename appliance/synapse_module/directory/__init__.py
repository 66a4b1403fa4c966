"""The agents' directory: who may find whom in user directory searches."""
