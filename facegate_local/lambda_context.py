"""The Lambda context object, as the Python runtime builds it, for in-process calls."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class LambdaContext:
    """What handlers (and Powertools' ``inject_lambda_context``) read from a context.

    ``memory_limit_in_mb`` is a string because the real runtime takes it from the
    ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` environment variable as it is. The deadline
    is the function's ``Timeout`` from the template; nothing stops a handler that
    runs past it locally, but ``get_remaining_time_in_millis`` reports 0 then,
    so deadline logic sees what it would see in Lambda.
    """

    function_name: str
    memory_limit_in_mb: str
    invoked_function_arn: str
    timeout_s: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_stream_name: str = "local"
    identity: None = None
    client_context: None = None
    _deadline: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
