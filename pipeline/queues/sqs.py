"""Amazon SQS (or any SQS-compatible endpoint, such as moto) as a work queue.

The endpoint is `TELEMETRY_SQS_ENDPOINT_URL` (unset: AWS's own), never the S3 one: a store on
MinIO and a queue on AWS is a normal setup. The region is boto3's own (AWS_DEFAULT_REGION, else
the profile in ~/.aws/config), us-east-1 only when boto3 resolves none.

The lease is SQS's visibility timeout, in whole seconds (rounded up). Dead-lettering is SQS's
own redrive policy: the queue `<name>` is created, when missing, with a `<name>-dead` queue and
`maxReceiveCount = max_attempts`, so a message received that many times without a delete moves
to the dead-letter queue on the next receive, as on the other backends.

SQS shows a message released with a delay as it shows a leased one ("not visible"), so
`census` counts as delayed the delays this process (and the workers it forked) set, noted in
pipeline.queues.delay_ledger with SQS's rounding; the rest of the hidden messages in flight.

SQS accepts a stale receipt handle for a delete in some cases, so the lease check that the
other backends make on the server is made here against the claimer's own clock: once the lease
deadline has passed, `ack`, `extend` and `release` do nothing and return False.

`redrive` receives from the dead-letter queue, sends the body to the main queue as a new message
(new id, receive count from zero), and only then deletes it from the dead-letter queue. A
failure between the two leaves the message in both queues, which is harmless (converting a
batch is idempotent per batch), where the other order could lose it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.exceptions
from botocore.config import Config

from pipeline.aws import default_region, make_client, open_error
from pipeline.config import read_setting
from pipeline.errors import ConfigError, QueueError
from pipeline.queues.base import Message, QueueCensus, WorkQueue
from pipeline.queues.delay_ledger import ledger_for

log = logging.getLogger(__name__)

ENDPOINT_ENV = "TELEMETRY_SQS_ENDPOINT_URL"  # SQS only; the S3 endpoint says nothing about SQS
DEAD_SUFFIX = "-dead"
MAX_VISIBILITY = 43200  # SQS's limit, 12 hours
MAX_WAIT = 20  # SQS's long-poll limit
# How long a dead letter stays hidden while a scan looks at it (every one is made visible
# again when the scan ends, so only a scan that dies midway leaves them hidden that long). A
# scan longer than this sees its first messages again and stops there, possibly short.
LOOK_SECONDS = 300
DEFAULT_RETENTION = 345600  # SQS's default MessageRetentionPeriod, 4 days
REDRIVE_WAIT = 1  # a long poll, so an empty answer means empty, not "this server had none"
_AWS_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)


def _seconds(value: float) -> int:
    return max(0, min(MAX_VISIBILITY, math.ceil(value)))


class SQSQueue(WorkQueue):
    def __init__(
        self,
        url: str,
        name: str,
        endpoint_url: str | None = None,
        *,
        lease_seconds: float = 300.0,
        max_attempts: int = 5,
        setting: str = "TELEMETRY_QUEUE_URL",
        region: str | None = None,
    ) -> None:
        self.url = url
        self.name = name
        self.dead_name = name + DEAD_SUFFIX
        self.endpoint_url = endpoint_url or read_setting("sqs_endpoint_url") or None
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.setting = setting
        self.region = region or default_region()
        if lease_seconds <= 0 or max_attempts < 1:
            raise ConfigError(setting, "lease must be positive and max_attempts at least 1")
        self._config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10)
        self._client_obj: Any = None
        self._client_pid: int | None = None
        try:
            self.dead_url = self._ensure_queue(self.dead_name, {})
            dead_arn = self._client.get_queue_attributes(
                QueueUrl=self.dead_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            redrive = json.dumps(
                {"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(max_attempts)}
            )
            self.queue_url = self._ensure_queue(name, {"RedrivePolicy": redrive})
            self._delays = ledger_for(self.queue_url)
        except _AWS_ERRORS as exc:
            unset = f"AWS ({ENDPOINT_ENV} is unset)"
            raise open_error(
                setting,
                f"cannot open SQS queue {name!r} at {self.endpoint_url or unset}"
                f" in {self.region}: {exc}",
                exc,
            ) from exc

    @property
    def _client(self) -> Any:
        if self._client_obj is None or self._client_pid != os.getpid():
            self._client_obj = make_client("sqs", self.endpoint_url, self._config, self.region)
            self._client_pid = os.getpid()
        return self._client_obj

    def _ensure_queue(self, name: str, attributes: dict[str, str]) -> str:
        """Return the queue's URL, creating it with `attributes` when it does not exist."""
        try:
            queue_url = self._client.get_queue_url(QueueName=name)["QueueUrl"]
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "NonExistentQueue" not in code and code != "QueueDoesNotExist":
                raise
        else:
            if attributes:  # keep the redrive policy in step with max_attempts
                self._client.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
            return queue_url
        log.info("creating SQS queue %s", name)
        return self._client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]

    def _call(self, action: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, action)(**kwargs)
        except _AWS_ERRORS as exc:
            raise QueueError(f"{self.url}: {action} failed: {exc}") from exc

    def send(self, body: str) -> None:
        self._call("send_message", QueueUrl=self.queue_url, MessageBody=body)

    def claim(
        self, lease_seconds: float | None = None, wait_seconds: float = 0.0
    ) -> Message | None:
        lease = _seconds(self.lease_seconds if lease_seconds is None else lease_seconds)
        deadline = time.monotonic() + wait_seconds
        while True:
            started = time.time()
            remaining = max(0.0, deadline - time.monotonic())
            response = self._call(
                "receive_message",
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=1,
                VisibilityTimeout=lease,
                # whole seconds: any wait at all is at least a 1 s long poll
                WaitTimeSeconds=min(MAX_WAIT, math.ceil(remaining)),
                AttributeNames=["ApproximateReceiveCount"],
            )
            for item in response.get("Messages", []):
                attempts = int(item.get("Attributes", {}).get("ApproximateReceiveCount", 1))
                return Message(
                    item["MessageId"],
                    item["Body"],
                    item["ReceiptHandle"],
                    attempts,
                    started + lease,
                )
            if time.monotonic() >= deadline:
                return None
            if remaining < 1:
                time.sleep(min(0.1, remaining))

    @staticmethod
    def _holds(message: Message) -> bool:
        return bool(message.receipt) and time.time() < message.lease_deadline

    def ack(self, message: Message) -> bool:
        if not self._holds(message):
            return False
        self._call("delete_message", QueueUrl=self.queue_url, ReceiptHandle=message.receipt)
        message.lease_deadline = 0.0
        return True

    def _set_visibility(self, message: Message, seconds: int) -> bool:
        try:
            self._client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message.receipt, VisibilityTimeout=seconds
            )
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "ReceiptHandleIsInvalid" in code or "MessageNotInflight" in code:
                return False
            raise QueueError(f"{self.url}: change_message_visibility failed: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise QueueError(f"{self.url}: change_message_visibility failed: {exc}") from exc
        return True

    def extend(self, message: Message, lease_seconds: float) -> bool:
        if not self._holds(message):
            return False
        started = time.time()
        seconds = _seconds(lease_seconds)
        if not self._set_visibility(message, seconds):
            return False
        message.lease_deadline = started + seconds
        return True

    def release(self, message: Message, delay_seconds: float = 0.0) -> bool:
        if not self._holds(message):
            return False
        seconds = _seconds(delay_seconds)
        if not self._set_visibility(message, seconds):
            return False
        message.lease_deadline = 0.0
        if seconds > 0:
            self._delays.add(time.time() + seconds)  # visible by then at the latest
        return True

    def depth(self) -> int:
        return self._approximate_count(self.queue_url)

    def census(self) -> QueueCensus:
        visible, hidden = self._approximate_counts(self.queue_url)
        pending = self._delays.pending()[:hidden]
        return QueueCensus(
            waiting=visible,
            in_flight=hidden - len(pending),
            delayed=len(pending),
            next_due=pending[0] if pending else None,
        )

    def retention_seconds(self) -> float:
        """SQS drops a message this long after it was first sent, even from the dead-letter
        queue (whose clock keeps running from the original send), so the longer of the two
        queues' MessageRetentionPeriod bounds how long any message of ours can exist."""
        periods = []
        for queue_url in (self.queue_url, self.dead_url):
            attributes = self._call(
                "get_queue_attributes",
                QueueUrl=queue_url,
                AttributeNames=["MessageRetentionPeriod"],
            )["Attributes"]
            periods.append(float(attributes.get("MessageRetentionPeriod", DEFAULT_RETENTION)))
        return max(periods)

    def dead_letter_count(self) -> int:
        """From the dead-letter queue's attributes: reading its messages would hide them for
        a while (from an operator's redrive, say), and short polls may miss a lone message."""
        return self._approximate_count(self.dead_url)

    def _approximate_count(self, queue_url: str) -> int:
        """Waiting plus in-flight messages, as SQS counts them (approximately)."""
        return sum(self._approximate_counts(queue_url))

    def _approximate_counts(self, queue_url: str) -> tuple[int, int]:
        """(visible, not visible) messages, as SQS counts them (approximately)."""
        attributes = self._call(
            "get_queue_attributes",
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        visible = int(attributes.get("ApproximateNumberOfMessages", 0))
        hidden = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
        return visible, hidden

    def dead_letters(self) -> list[Message]:
        """Read the dead-letter queue and put every message straight back.

        The receive count SQS reports includes these looks, so `attempts` is given as
        `max_attempts`, which every dead letter has exhausted.
        """
        return [
            Message(item["MessageId"], item["Body"], "", self.max_attempts)
            for item in self._scan_dead(taken=set())
        ]

    def _scan_dead(self, taken: set[str]) -> Iterator[dict]:
        """Yield every dead letter once, received (so hidden for LOOK_SECONDS).

        The caller adds the receipt handle of each message it deleted to `taken`; all others
        are made visible again when the scan ends, however it ends. The scan ends when a
        receive brings nothing, or only messages seen before: a pass longer than LOOK_SECONDS
        has come round to its first messages, which must not keep it going for ever.
        """
        looked: set[str] = set()
        received: list[str] = []
        try:
            while True:
                response = self._call(
                    "receive_message",
                    QueueUrl=self.dead_url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=LOOK_SECONDS,
                    WaitTimeSeconds=REDRIVE_WAIT,  # long: a short poll may miss a lone message
                )
                items = response.get("Messages", [])
                received.extend(item["ReceiptHandle"] for item in items)
                if not items or all(item["MessageId"] in looked for item in items):
                    return
                for item in items:
                    if item["MessageId"] not in looked:
                        looked.add(item["MessageId"])
                        yield item
        finally:
            self._show_dead([receipt for receipt in received if receipt not in taken])

    def _show_dead(self, receipts: list[str]) -> None:
        """Make dead letters that were received only to be looked at visible again."""
        for receipt in receipts:
            try:
                self._client.change_message_visibility(
                    QueueUrl=self.dead_url, ReceiptHandle=receipt, VisibilityTimeout=0
                )
            except _AWS_ERRORS as exc:
                log.warning("%s: could not make dead letter visible again: %s", self.url, exc)

    def redrive(self, message: Message) -> bool:
        return self._redrive_where(lambda item: item["MessageId"] == message.id, limit=1) == 1

    def redrive_all(self) -> int:
        return self._redrive_where(lambda item: True)

    def _redrive_where(self, wanted: Callable[[dict], bool], limit: int | None = None) -> int:
        """Move the dead letters `wanted` accepts (at most `limit`) to the main queue.

        A message this call sent that is dead-lettered again before it ends (the cause is not
        fixed yet) is left in the dead-letter queue, so the loop cannot chase its own tail.
        """
        if limit is not None and limit <= 0:
            return 0
        moved = 0
        sent: set[str] = set()
        taken: set[str] = set()
        with contextlib.closing(self._scan_dead(taken)) as scan:
            for item in scan:
                if item["MessageId"] in sent or not wanted(item):
                    continue
                response = self._call(
                    "send_message", QueueUrl=self.queue_url, MessageBody=item["Body"]
                )
                sent.add(response["MessageId"])
                self._call(
                    "delete_message", QueueUrl=self.dead_url, ReceiptHandle=item["ReceiptHandle"]
                )
                taken.add(item["ReceiptHandle"])
                moved += 1
                if limit is not None and moved >= limit:
                    break
        return moved

    def close(self) -> None:
        if self._client_obj is not None:
            self._client_obj.close()
            self._client_obj = None
