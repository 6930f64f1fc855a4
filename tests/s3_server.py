"""A real S3-protocol server over HTTP for tests and the demo: moto's standalone server in a thread, reached
with the real boto3 client, nothing to install by hand. Credentials are moto's dummies, given to boto3 the
only way kosmos-promote takes them: its own chain (here the AWS_* environment variables)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1", **_keys())

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, url: str) -> dict[str, str]:
        """The KPROMOTE_* and AWS_* variables that point a process at `url` (s3://bucket/prefix) here."""
        return {
            **DUMMY_CREDENTIALS,
            "KPROMOTE_BACKUP_URL": url,
            "KPROMOTE_S3_ENDPOINT_URL": self.endpoint_url,
            "KPROMOTE_S3_REGION": "us-east-1",
            "KPROMOTE_S3_FORCE_PATH_STYLE": "true",
        }


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start moto's server on a free port of 127.0.0.1; this process gets the dummy credentials too."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = {name: os.environ.get(name) for name in DUMMY_CREDENTIALS}
    os.environ.update(DUMMY_CREDENTIALS)
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
