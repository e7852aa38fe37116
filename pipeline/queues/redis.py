"""Redis as a work queue, with the "reliable queue" pattern: a dead consumer loses nothing.

Keys (all share one hash tag, so the queue also lives on one Redis Cluster slot):

    tq:{name}:ready      sorted set  id -> time it becomes visible (send time, or release + delay)
    tq:{name}:inflight   sorted set  id -> lease deadline
    tq:{name}:bodies     hash        id -> body
    tq:{name}:attempts   hash        id -> number of claims so far
    tq:{name}:receipts   hash        id -> receipt token of the current lease
    tq:{name}:dead       list        ids that exceeded max_attempts (bodies kept for inspection
                                     and for `redrive`, which moves an id back to `ready`)
    tq:{name}:seq        counter     for ids, zero-padded so equal scores keep send order

Every operation is one Lua script, so it is atomic, and uses the Redis server's clock, so
consumers on machines with skewed clocks agree on when a lease ends. A claim first moves
expired leases back to `ready` (that is how a killed consumer's message comes back), then
takes the oldest visible message, or dead-letters it when it has been claimed too often.
The queue name comes from the URL's `queue` parameter: `redis://host:6379/0?queue=work`.
"""

from __future__ import annotations

import logging
import time
import uuid
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from pipeline.errors import ConfigError, QueueError, ServiceUnreachable
from pipeline.queues.base import Message, QueueCensus, WorkQueue

log = logging.getLogger(__name__)

DEFAULT_QUEUE_NAME = "telemetry"

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

_SEND = (
    _NOW
    + """
local id = string.format('%012d', redis.call('INCR', KEYS[3]))
redis.call('HSET', KEYS[2], id, ARGV[1])
redis.call('ZADD', KEYS[1], now, id)
return id
"""
)

# KEYS: ready inflight bodies attempts receipts dead; ARGV: lease max_attempts token
_CLAIM = (
    _NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #expired, 2 do
  redis.call('ZADD', KEYS[1], expired[i + 1], expired[i])
  redis.call('ZREM', KEYS[2], expired[i])
  redis.call('HDEL', KEYS[5], expired[i])
end
for _ = 1, 1000 do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
  if #ids == 0 then return false end
  local id = ids[1]
  local attempts = tonumber(redis.call('HGET', KEYS[4], id) or '0')
  redis.call('ZREM', KEYS[1], id)
  if attempts >= tonumber(ARGV[2]) then
    redis.call('RPUSH', KEYS[6], id)
  else
    local deadline = now + tonumber(ARGV[1])
    redis.call('ZADD', KEYS[2], deadline, id)
    redis.call('HSET', KEYS[5], id, ARGV[3])
    attempts = redis.call('HINCRBY', KEYS[4], id, 1)
    return {id, redis.call('HGET', KEYS[3], id), attempts, tostring(deadline)}
  end
end
return false
"""
)

# A lease holds when the receipt matches and its deadline has not passed.
# KEYS: ready inflight bodies attempts receipts; ARGV: id token [seconds]
_HOLDS = (
    _NOW
    + """
if redis.call('HGET', KEYS[5], ARGV[1]) ~= ARGV[2] then return false end
local deadline = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not deadline or tonumber(deadline) <= now then return false end
"""
)

_ACK = (
    _HOLDS
    + """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return 1
"""
)

_EXTEND = (
    _HOLDS
    + """
local until_ = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], until_, ARGV[1])
return tostring(until_)
"""
)

_RELEASE = (
    _HOLDS
    + """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

# Waiting (visible in `ready`, or an expired lease), in flight, delayed, and the soonest due
# time, in one snapshot by the server's clock. KEYS: ready inflight
_CENSUS = (
    _NOW
    + """
local ready = redis.call('ZCARD', KEYS[1])
local delayed = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local in_flight = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
local expired = redis.call('ZCARD', KEYS[2]) - in_flight
local soonest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local due = ''
if #soonest > 0 then due = soonest[2] end
return {ready - delayed + expired, in_flight, delayed, due}
"""
)

# Back to `ready`, visible now, attempts from zero; the id, body and send order are kept.
# KEYS: ready attempts receipts dead; ARGV: id
_REDRIVE = (
    _NOW
    + """
if redis.call('LREM', KEYS[4], 1, ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
return 1
"""
)

# The first ARGV[1] ids of the dead list at once (a batch, so one call never blocks Redis long).
# KEYS: ready attempts receipts dead; ARGV: limit
_REDRIVE_FIRST = (
    _NOW
    + """
local ids = redis.call('LRANGE', KEYS[4], 0, tonumber(ARGV[1]) - 1)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZADD', KEYS[1], now, id)
end
redis.call('LTRIM', KEYS[4], #ids, -1)
return #ids
"""
)
REDRIVE_BATCH = 500


def _split_url(url: str) -> tuple[str, str]:
    """Separate our `queue` parameter from what redis-py understands."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    name = query.pop("queue", [DEFAULT_QUEUE_NAME])[0]
    rest = urlencode({k: v[0] for k, v in query.items()})
    return urlunparse(parsed._replace(query=rest)), name


class RedisQueue(WorkQueue):
    def __init__(
        self,
        url: str,
        *,
        lease_seconds: float = 300.0,
        max_attempts: int = 5,
        setting: str = "TELEMETRY_QUEUE_URL",
        poll_interval: float = 0.05,
        name: str | None = None,
    ) -> None:
        self.url = url
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self.setting = setting
        if lease_seconds <= 0 or max_attempts < 1:
            raise ConfigError(setting, "lease must be positive and max_attempts at least 1")
        connect_url, url_name = _split_url(url)
        self.name = name or url_name
        try:
            self._redis = redis.Redis.from_url(
                connect_url,
                socket_timeout=30,
                socket_connect_timeout=5,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            )
        except ValueError as exc:
            raise ConfigError(setting, f"{url!r} is not a usable Redis URL: {exc}") from exc
        prefix = f"tq:{{{self.name}}}:"
        self._keys = [
            prefix + k for k in ("ready", "inflight", "bodies", "attempts", "receipts", "dead")
        ]
        self._seq = prefix + "seq"
        self._send = self._redis.register_script(_SEND)
        self._claim = self._redis.register_script(_CLAIM)
        self._ack = self._redis.register_script(_ACK)
        self._extend = self._redis.register_script(_EXTEND)
        self._release = self._redis.register_script(_RELEASE)
        self._redrive = self._redis.register_script(_REDRIVE)
        self._redrive_first = self._redis.register_script(_REDRIVE_FIRST)
        self._census = self._redis.register_script(_CENSUS)
        try:
            self._redis.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ServiceUnreachable(
                setting, f"cannot reach Redis at {connect_url}: {exc}"
            ) from exc
        except redis.RedisError as exc:
            raise ConfigError(setting, f"cannot use Redis at {connect_url}: {exc}") from exc

    def _run(self, script, keys: list[str], args: list) -> object:
        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise QueueError(f"{self.url}: queue operation failed: {exc}") from exc

    def send(self, body: str) -> None:
        ready, _, bodies, *_ = self._keys
        self._run(self._send, [ready, bodies, self._seq], [body])

    def claim(
        self, lease_seconds: float | None = None, wait_seconds: float = 0.0
    ) -> Message | None:
        lease = self.lease_seconds if lease_seconds is None else lease_seconds
        deadline = time.monotonic() + wait_seconds
        while True:
            token = uuid.uuid4().hex
            found = self._run(
                self._claim, self._keys, [repr(float(lease)), self.max_attempts, token]
            )
            if found:
                msg_id, body, attempts, until = found
                return Message(
                    msg_id.decode(), body.decode("utf-8"), token, int(attempts), float(until)
                )
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def ack(self, message: Message) -> bool:
        return bool(self._run(self._ack, self._keys[:5], [message.id, message.receipt]))

    def extend(self, message: Message, lease_seconds: float) -> bool:
        until = self._run(
            self._extend, self._keys[:5], [message.id, message.receipt, repr(float(lease_seconds))]
        )
        if not until:
            return False
        message.lease_deadline = float(until)
        return True

    def release(self, message: Message, delay_seconds: float = 0.0) -> bool:
        args = [message.id, message.receipt, repr(float(delay_seconds))]
        return bool(self._run(self._release, self._keys[:5], args))

    def depth(self) -> int:
        ready, inflight, *_ = self._keys
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                counts = pipe.zcard(ready).zcard(inflight).execute()
        except redis.RedisError as exc:
            raise QueueError(f"{self.url}: depth failed: {exc}") from exc
        return int(sum(counts))

    def census(self) -> QueueCensus:
        waiting, in_flight, delayed, due = self._run(self._census, self._keys[:2], [])
        next_due = float(due) if due else None
        return QueueCensus(int(waiting), int(in_flight), int(delayed), next_due)

    def message_bodies(self) -> list[str]:
        """Every body in the `bodies` hash (waiting, in flight and dead messages all keep
        theirs there until acknowledged), read with HSCAN so a long queue never blocks Redis."""
        try:
            return [
                body.decode("utf-8")
                for _id, body in self._redis.hscan_iter(self._keys[2], count=1000)
            ]
        except redis.RedisError as exc:
            raise QueueError(f"{self.url}: listing messages failed: {exc}") from exc

    def dead_letter_count(self) -> int:
        try:
            return int(self._redis.llen(self._keys[5]))
        except redis.RedisError as exc:
            raise QueueError(f"{self.url}: counting dead letters failed: {exc}") from exc

    def dead_letters(self) -> list[Message]:
        _, _, bodies, attempts, _, dead = self._keys
        try:
            ids = [i.decode() for i in self._redis.lrange(dead, 0, -1)]
            if not ids:
                return []
            texts = self._redis.hmget(bodies, ids)
            counts = self._redis.hmget(attempts, ids)
        except redis.RedisError as exc:
            raise QueueError(f"{self.url}: reading dead letters failed: {exc}") from exc
        return [
            Message(i, (b or b"").decode("utf-8"), "", int(n or 0))
            for i, b, n in zip(ids, texts, counts, strict=True)
        ]

    def _redrive_keys(self) -> list[str]:
        ready, _, _, attempts, receipts, dead = self._keys
        return [ready, attempts, receipts, dead]

    def redrive(self, message: Message) -> bool:
        return bool(self._run(self._redrive, self._redrive_keys(), [message.id]))

    def redrive_all(self) -> int:
        dead = self._keys[5]
        try:
            total = int(self._redis.llen(dead))
        except redis.RedisError as exc:
            raise QueueError(f"{self.url}: reading dead letters failed: {exc}") from exc
        # Bounded by the count at the start, so messages dead-lettered again while this runs
        # (the cause not fixed yet) cannot keep it going.
        moved = 0
        while moved < total:
            limit = min(REDRIVE_BATCH, total - moved)
            count = int(self._run(self._redrive_first, self._redrive_keys(), [limit]))
            if count == 0:
                break
            moved += count
        return moved

    def close(self) -> None:
        self._redis.close()
