"""Job execution: the state machine, runners (in-process and Celery) and task execution."""
