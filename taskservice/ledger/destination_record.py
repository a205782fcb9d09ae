"""The destination record, field for field as Function Compute posts it, so consumers written for FC keep working.

statusCode is 200 when the handler answered (returned, or raised: functionError "Unhandled"); 500 when the platform
ended the invocation (Timeout, WorkerLost, ProcessExited, Stopped, EventAgeExceeded, Invalid), whose name is then in
functionError.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from taskservice.statuses import SUCCESS_CONDITION, Condition

FUNCTION_ARN = "acs:fc:local:taskservice:functions/{function}"
PLATFORM_ERRORS = frozenset({"Timeout", "WorkerLost", "ProcessExited", "ResultNotSerializable"})
# These conditions name the platform error themselves; RetriesExhausted keeps the handler's error type.
CONDITION_ERRORS = {c.value: c.value for c in (Condition.EVENT_AGE_EXCEEDED, Condition.STOPPED, Condition.INVALID)}


def function_error(condition: str, error_type: str | None) -> str:
    if condition == SUCCESS_CONDITION:
        return ""
    if condition in CONDITION_ERRORS:
        return CONDITION_ERRORS[condition]
    return error_type if error_type in PLATFORM_ERRORS else "Unhandled"


def build_record(*, function: str, request_id: str, condition: str, attempts: int, payload: str, result: str | None,
                 error_type: str | None, error: str | None, finished_at: datetime) -> dict[str, Any]:
    fn_error = function_error(condition, error_type)
    if condition == SUCCESS_CONDITION:
        response = result if result is not None else "null"
    else:
        first_line = (error or "").splitlines()[0] if error else ""
        response = json.dumps({"errorMessage": first_line, "errorType": error_type or fn_error})
    return {
        "timestamp": int(finished_at.timestamp() * 1000),
        "requestContext": {"requestId": request_id, "functionArn": FUNCTION_ARN.format(function=function),
                           "condition": condition, "approximateInvokeCount": attempts},
        "requestPayload": payload,
        "responseContext": {"statusCode": 200 if fn_error in ("", "Unhandled") else 500,
                            "functionError": fn_error},
        "responsePayload": response,
    }
