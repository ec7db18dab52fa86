"""The S3 clients (aioboto3): backup storage (SeaweedFS locally, Scaleway in production)
and the bucket of access-export archives (at the provider that hosts the servers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from workers.settings import Settings


def s3_client(settings: Settings) -> Any:
    """The backup storage's client, as an async context manager."""
    return _client(
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.aws_access_key_id.get_secret_value(),
        settings.aws_secret_access_key.get_secret_value(),
    )


def export_s3_client(settings: Settings) -> Any:
    """The export archives' client: EXPORT_S3_ENDPOINT_URL and its keys, each falling back
    to the backup storage's."""
    key_id = settings.export_aws_access_key_id or settings.aws_access_key_id
    secret = settings.export_aws_secret_access_key or settings.aws_secret_access_key
    return _client(
        settings.export_s3_endpoint_url or settings.s3_endpoint_url,
        settings.export_s3_region or settings.s3_region,
        key_id.get_secret_value(),
        secret.get_secret_value(),
    )


def export_prefix(account_id: int) -> str:
    """Where an account's export archives are kept: what its erasure deletes."""
    return f"exports/{account_id}/"


@asynccontextmanager
async def _client(endpoint: str | None, region: str, key_id: str, secret: str) -> AsyncIterator[Any]:
    boto = aioboto3.Session()
    async with boto.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            retries={"max_attempts": 5, "mode": "standard"},
            # Bodies are not hashed into the signature. Over https (the only scheme production
            # accepts) botocore already leaves uploads' bodies out, since TLS and each
            # request's CRC32 checksum guard them; saying so here makes the local http
            # server's uploads cost what production's do, not a SHA-256 of every part more.
            s3={"addressing_style": "path", "payload_signing_enabled": False},
        ),
    ) as client:
        yield client


def describe_s3_error(error: BaseException) -> str:
    """What may be stored or shown of an S3 failure: the operation and S3's error code
    (`SignatureDoesNotMatch`, `NoSuchBucket`…) or the connection error's type; never a key."""
    if isinstance(error, ClientError):
        return f"S3 {error.operation_name}: {error.response.get('Error', {}).get('Code', 'error')}"
    if isinstance(error, BotoCoreError):
        return f"S3: {type(error).__name__}"
    return type(error).__name__  # another library's message may quote data


def is_missing_bucket(error: BaseException) -> bool:
    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in (
        "404",
        "NoSuchBucket",
    )


async def delete_prefix(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    """Delete every object and abort every multipart upload under `prefix`.
    Idempotent: an empty prefix deletes nothing. Returns the counts."""
    objects, uploads = await asyncio.gather(
        _delete_objects(client, bucket, prefix), _abort_uploads(client, bucket, prefix)
    )
    return {"objects": objects, "multipart_uploads": uploads}


async def _delete_objects(client: Any, bucket: str, prefix: str) -> int:
    deleted = 0
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            response = await client.delete_objects(
                Bucket=bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True}
            )
            if response.get("Errors"):
                raise RuntimeError(f"S3 refused to delete {len(response['Errors'])} objects under {prefix}")
            deleted += len(keys[start : start + 1000])
    return deleted


async def _abort_uploads(client: Any, bucket: str, prefix: str) -> int:
    aborted = 0
    paginator = client.get_paginator("list_multipart_uploads")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            await client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
    return aborted


async def count_prefix(client: Any, bucket: str, prefix: str) -> int:
    """Objects and multipart uploads still under `prefix`."""
    objects = 0
    async for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects += int(page.get("KeyCount", 0))
    uploads = 0
    async for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        uploads += len(page.get("Uploads", []))
    return objects + uploads
