"""What `serve` prints and logs, without a stack: the grpcurl lines and the JSON log lines."""

from __future__ import annotations

import json
import logging
import re
import shlex

import pytest
from google.protobuf import json_format

from service import logging as service_logging
from service.api.generated import inventory_pb2 as pb
from service.config import Settings
from service.lifecycle import grpcurl_lines

REQUESTS = {
    "GetStock": pb.GetStockRequest,
    "ReserveStock": pb.ReserveStockRequest,
    "UpdateStock": pb.UpdateStockRequest,
}


def test_grpcurl_lines_are_valid_calls_on_the_demo_data() -> None:
    lines = grpcurl_lines(Settings(), 40404, tls=False)
    assert {re.search(r"InventoryService/(\w+)$", line).group(1) for line in lines} == set(  # type: ignore[union-attr]
        REQUESTS
    )
    for line in lines:
        argv = shlex.split(line)
        assert argv[:2] == ["grpcurl", "-plaintext"]
        assert argv[-2] == "localhost:40404"
        method = argv[-1].rsplit("/", 1)[1]
        payload = argv[argv.index("-d") + 1]
        message = json_format.Parse(payload, REQUESTS[method]())  # what grpcurl would send
        assert "prod-123" in payload and "var-456" in payload, message


def test_grpcurl_lines_name_the_bound_host_and_tls() -> None:
    [line, *_] = grpcurl_lines(Settings(grpc_host="10.1.2.3"), 4004, tls=True)
    assert "-insecure" in line and "10.1.2.3:4004" in line and "-plaintext" not in line


def test_json_logs_carry_extra_fields_and_exceptions(capsys: pytest.CaptureFixture[str]) -> None:
    restore = service_logging.configure(Settings(log_level="DEBUG", log_format="json"))
    log = logging.getLogger("test.api")
    try:
        log.info("ready", extra={"grpc_port": 4004})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    finally:
        restore()
    ready = next(line for line in lines if line["msg"] == "ready")
    assert ready["grpc_port"] == 4004 and ready["level"] == "INFO" and ready["logger"] == "test.api"
    failed = next(line for line in lines if line["msg"] == "failed")
    assert "ValueError: boom" in failed["exc"]
