"""Jobs for tests/client/test_job_queues.py (importable by RQ's work horse by name)."""


def add(a: int, b: int) -> int:
    return a + b


def divide(a: int, b: int) -> float:
    return a / b
