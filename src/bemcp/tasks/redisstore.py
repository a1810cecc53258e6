"""The shared task store: Redis, for many processes and hosts (`--task-store redis://…`).

Each rule of the store contract that needs more than one command is a Lua script, and Redis runs a script
atomically: creation (the task, its owner's index, its worker's set, the expiry index), every transition, and a
restarted worker's interrupt. So a cancel racing a completion has one winner whichever processes send them.

Keys, under `prefix` (default `bemcp:`): `task:<id>` (a hash; Redis also expires it at the end of its TTL; each
pending input request is a field `in:<key>`, so that scripts add and remove them without parsing JSON),
`owner:<owner>` (a sorted set of ids by creation order, for paging), `worker:<worker>` (the ids it still runs),
`expiry` (ids by expiry time, so `sweep` can clean the indexes), `seq` (the creation counter), `answers:<id>` (a
hash of the answers its worker has not taken), `signals:<worker>` (a list, newest first, of "<at>|<kind>|<id>"),
`signalled` (the workers that may have signals, for `sweep`) and `leases` (a sorted set of workers by lease end).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any

import orjson

from bemcp.tasks.model import TERMINAL, TaskRecord, TaskStatus
from bemcp.tasks.store import TaskNotFound

try:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - the extra is missing; the constructor says how to fix it
    Redis = None  # type: ignore[assignment,misc]

_TERMINAL_LUA = "local terminal = {completed = true, failed = true, cancelled = true}\n"

_INPUTS_LUA = """
local function clear_inputs(key)
    for _, f in ipairs(redis.call('HKEYS', key)) do
        if string.sub(f, 1, 3) == 'in:' then redis.call('HDEL', key, f) end
    end
end
local function expired(key, now)
    local created, ttl = unpack(redis.call('HMGET', key, 'created_at', 'ttl_ms'))
    return tonumber(created) + tonumber(ttl) / 1000 <= tonumber(now)
end
"""

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], 'seq', seq, unpack(ARGV, 3))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return 1
"""

_UPDATE = (
    _TERMINAL_LUA
    + _INPUTS_LUA
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if terminal[status] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_message', ARGV[2], 'updated_at', ARGV[3])
if ARGV[1] == 'working' then clear_inputs(KEYS[1]) end
return 1
"""
)

# ARGV: message, now, then (key, request) pairs.
_NEED_INPUT = (
    _TERMINAL_LUA
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if terminal[status] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'input_required', 'status_message', ARGV[1], 'updated_at', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], 'in:' .. ARGV[i], ARGV[i + 1]) end
return 1
"""
)

# KEYS: task, its answers, the signals prefix, signalled, expiry. ARGV: owner, now, id, then (key, answer) pairs.
_ANSWER = (
    _TERMINAL_LUA
    + _INPUTS_LUA
    + """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or expired(KEYS[1], ARGV[2]) then return false end
if not terminal[redis.call('HGET', KEYS[1], 'status')] then
    local n = 0
    for i = 4, #ARGV, 2 do
        if redis.call('HDEL', KEYS[1], 'in:' .. ARGV[i]) == 1 then
            redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
            n = n + 1
        end
    end
    if n > 0 then
        redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
        redis.call('PEXPIREAT', KEYS[2], redis.call('ZSCORE', KEYS[5], ARGV[3]))  -- gone with the task
        local worker = redis.call('HGET', KEYS[1], 'worker')
        redis.call('LPUSH', KEYS[3] .. worker, ARGV[2] .. '|input|' .. ARGV[3])
        redis.call('SADD', KEYS[4], worker)
    end
end
return redis.call('HGETALL', KEYS[1])
"""
)

_TAKE_ANSWERS = """
local answers = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return answers
"""

_FINISH = (
    _TERMINAL_LUA
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if not terminal[status] then
    redis.call('HSET', KEYS[1], 'status', ARGV[1], 'result', ARGV[2], 'error', ARGV[3],
               'status_message', ARGV[4], 'updated_at', ARGV[5])
    redis.call('SREM', KEYS[2] .. redis.call('HGET', KEYS[1], 'worker'), ARGV[6])
end
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: task, the worker-set prefix, the signals prefix, signalled. ARGV: owner, now, message, id.
_CANCEL = (
    _TERMINAL_LUA
    + _INPUTS_LUA
    + """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or expired(KEYS[1], ARGV[2]) then return false end
if not terminal[redis.call('HGET', KEYS[1], 'status')] then
    redis.call('HSET', KEYS[1], 'status', 'cancelled', 'result', 'null', 'error', 'null',
               'status_message', ARGV[3], 'updated_at', ARGV[2])
    local worker = redis.call('HGET', KEYS[1], 'worker')
    redis.call('SREM', KEYS[2] .. worker, ARGV[4])
    redis.call('LPUSH', KEYS[3] .. worker, ARGV[2] .. '|cancel|' .. ARGV[4])
    redis.call('SADD', KEYS[4], worker)
end
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: the worker's set, leases, the claimer's set. ARGV: error, message, now, worker, task prefix, claimer,
# then the resumable tool names (none when there is no claimer). Returns {failed, {id, fields, id, fields...}}.
_INTERRUPT = (
    _TERMINAL_LUA
    + _INPUTS_LUA
    + """
local resumable = {}
for i = 7, #ARGV do resumable[ARGV[i]] = true end
local n, claimed = 0, {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local key = ARGV[5] .. id
    -- Removed before a claim adds it back: the claimer may be the worker itself.
    redis.call('SREM', KEYS[1], id)
    local status, name, request = unpack(redis.call('HMGET', key, 'status', 'name', 'request'))
    if status and not terminal[status] then
        if resumable[name] and request and request ~= 'null' then
            clear_inputs(key)
            redis.call('HSET', key, 'worker', ARGV[6], 'status', 'working', 'updated_at', ARGV[3])
            redis.call('SADD', KEYS[3], id)
            table.insert(claimed, id)
            table.insert(claimed, redis.call('HGETALL', key))
        else
            redis.call('HSET', key, 'status', 'failed', 'error', ARGV[1], 'status_message', ARGV[2],
                       'updated_at', ARGV[3])
            n = n + 1
        end
    end
end
redis.call('ZREM', KEYS[2], ARGV[4])
return {n, claimed}
"""
)

# KEYS: expiry, signalled. ARGV: now (ms), task prefix, owner prefix, worker prefix, answers prefix, signals
# prefix, the oldest signal time kept (s).
_SWEEP = """
local n, gone = 0, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
    local key = ARGV[2] .. id
    local owner = redis.call('HGET', key, 'owner')
    local worker = redis.call('HGET', key, 'worker')
    if owner then redis.call('ZREM', ARGV[3] .. owner, id) end
    if worker then redis.call('SREM', ARGV[4] .. worker, id) end
    redis.call('DEL', key, ARGV[5] .. id)
    redis.call('ZREM', KEYS[1], id)
    gone[id] = true
    n = n + 1
end
local oldest = tonumber(ARGV[7])
for _, worker in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local list = ARGV[6] .. worker
    for _, s in ipairs(redis.call('LRANGE', list, 0, -1)) do
        local at, id = string.match(s, '^([^|]*)|[^|]*|(.*)$')
        if gone[id] or tonumber(at) < oldest then redis.call('LREM', list, 1, s) end
    end
    if redis.call('EXISTS', list) == 0 then redis.call('SREM', KEYS[2], worker) end
end
return n
"""

SIGNAL_MAX_AGE_S = 600.0  # a signal nobody took in ten minutes is for a worker that never came back


def _text(value: Any) -> bytes:
    return orjson.dumps(value)


def _record(task_id: str, fields: dict[bytes, bytes]) -> TaskRecord:
    def num(k: bytes) -> float:
        return float(fields[k])

    inputs = {k[3:].decode(): orjson.loads(v) for k, v in fields.items() if k.startswith(b"in:")}

    return TaskRecord(
        task_id=task_id,
        owner=fields[b"owner"].decode(),
        worker=fields[b"worker"].decode(),
        method=fields[b"method"].decode(),
        name=fields[b"name"].decode(),
        status=TaskStatus(fields[b"status"].decode()),
        created_at=num(b"created_at"),
        updated_at=num(b"updated_at"),
        ttl_ms=int(fields[b"ttl_ms"]),
        poll_interval_ms=int(fields[b"poll_interval_ms"]),
        status_message=orjson.loads(fields[b"status_message"]),
        result=orjson.loads(fields[b"result"]),
        error=orjson.loads(fields[b"error"]),
        input_requests=inputs or None,
        request=orjson.loads(fields.get(b"request", b"null")),  # absent from tasks an older version stored
    )


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisTaskStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "bemcp:",
        clock: Callable[[], float] = time.time,
        max_connections: int = 32,
    ) -> None:
        if Redis is None:
            raise RuntimeError("a redis:// task store needs the redis package: pip install 'bemcp[redis]'")
        self.url = url
        self._p = prefix
        self._clock = clock
        self._redis: Redis | None = None
        self._scripts: dict[str, Any] = {}
        # Bounded, and a caller past the bound waits for a connection instead of failing: a burst of task
        # creations queues here rather than opening a connection each.
        self._max_connections = max_connections

    async def start(self) -> None:
        """Connect and check the server answers (a wrong URL fails here, with Redis's reason); idempotent."""
        if self._redis is not None:
            return
        pool = BlockingConnectionPool.from_url(self.url, max_connections=self._max_connections, timeout=30)
        client = Redis(connection_pool=pool)
        try:
            await client.ping()
        except RedisError as e:
            await client.aclose()
            await pool.aclose()
            raise ConnectionError(f"the task store at {self.url} is not reachable: {e}") from None
        except BaseException:
            await client.aclose()
            await pool.aclose()
            raise
        self._scripts = {
            name: client.register_script(lua)
            for name, lua in (
                ("create", _CREATE),
                ("update", _UPDATE),
                ("need_input", _NEED_INPUT),
                ("answer", _ANSWER),
                ("take_answers", _TAKE_ANSWERS),
                ("finish", _FINISH),
                ("cancel", _CANCEL),
                ("interrupt", _INTERRUPT),
                ("sweep", _SWEEP),
            )
        }
        self._redis = client

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()
            await client.connection_pool.aclose()

    def _client(self) -> Any:
        # Any: redis-py types its answers as a union over its decoding modes; this client never decodes (bytes).
        if self._redis is None:
            raise RuntimeError("the task store is not started")
        return self._redis

    def _key(self, task_id: str) -> str:
        return f"{self._p}task:{task_id}"

    async def create(self, record: TaskRecord) -> None:
        r = record
        self._client()
        keys = [self._key(r.task_id), f"{self._p}owner:{r.owner}", f"{self._p}worker:{r.worker}"]
        keys += [f"{self._p}expiry", f"{self._p}seq"]
        fields: list[Any] = [
            "owner", r.owner, "worker", r.worker, "method", r.method, "name", r.name, "status", r.status.value,
            "created_at", repr(r.created_at), "updated_at", repr(r.updated_at), "ttl_ms", r.ttl_ms,
            "poll_interval_ms", r.poll_interval_ms, "status_message", _text(r.status_message),
            "result", _text(r.result), "error", _text(r.error), "request", _text(r.request),
        ]  # fmt: skip
        for key, req in (r.input_requests or {}).items():
            fields += [f"in:{key}", _text(req)]
        created = await self._scripts["create"](keys=keys, args=[r.task_id, int(r.expires_at * 1000), *fields])
        if not created:
            raise ValueError(f"task {record.task_id!r} exists")

    async def get(self, task_id: str, owner: str) -> TaskRecord | None:
        fields = await self._client().hgetall(self._key(task_id))
        if not fields or fields[b"owner"].decode() != owner:
            return None
        rec = _record(task_id, fields)
        return None if rec.expired(self._clock()) else rec

    async def list(self, owner: str, cursor: str | None, limit: int) -> tuple[list[TaskRecord], str | None]:
        client = self._client()
        index = f"{self._p}owner:{owner}"
        low: str = "-inf"
        if cursor is not None:
            score = await client.zscore(index, cursor)
            if score is None:
                return [], None
            low = f"({int(score)}"
        now = self._clock()
        page: list[TaskRecord] = []
        more = False
        while not more:
            ids = await client.zrangebyscore(index, low, "+inf", start=0, num=limit + 1, withscores=True)
            if not ids:
                break
            async with client.pipeline(transaction=False) as pipe:
                for member, _ in ids:
                    pipe.hgetall(self._key(member.decode()))
                found = await pipe.execute()
            for (member, score), fields in zip(ids, found, strict=True):
                low = f"({int(score)}"
                if not fields:
                    continue  # expired and deleted by Redis; `sweep` cleans the index
                rec = _record(member.decode(), fields)
                if rec.expired(now):
                    continue
                if len(page) == limit:
                    more = True
                    break
                page.append(rec)
            if len(ids) <= limit:
                break
        return page, (page[-1].task_id if more else None)

    async def update(self, task_id: str, status: TaskStatus, message: str | None) -> bool:
        if status in TERMINAL:
            raise ValueError("a terminal status is set with finish()")
        self._client()
        args = [status.value, _text(message), repr(self._clock())]
        changed = await self._scripts["update"](keys=[self._key(task_id)], args=args)
        if changed == -1:
            raise TaskNotFound(task_id)
        return bool(changed)

    async def need_input(self, task_id: str, requests: dict[str, dict[str, Any]], message: str | None) -> bool:
        self._client()
        args: list[Any] = [_text(message), repr(self._clock())]
        for key, req in requests.items():
            args += [key, _text(req)]
        changed = await self._scripts["need_input"](keys=[self._key(task_id)], args=args)
        if changed == -1:
            raise TaskNotFound(task_id)
        return bool(changed)

    async def answer(self, task_id: str, owner: str, responses: dict[str, Any]) -> TaskRecord | None:
        self._client()
        keys = [self._key(task_id), f"{self._p}answers:{task_id}", f"{self._p}signals:", f"{self._p}signalled"]
        keys.append(f"{self._p}expiry")
        args: list[Any] = [owner, repr(self._clock()), task_id]
        for key, value in responses.items():
            args += [key, _text(value)]
        flat = await self._scripts["answer"](keys=keys, args=args)
        return _record(task_id, _pairs(flat)) if flat else None

    async def take_answers(self, task_id: str) -> dict[str, Any]:
        self._client()
        flat = await self._scripts["take_answers"](keys=[f"{self._p}answers:{task_id}"], args=[])
        return {k.decode(): orjson.loads(v) for k, v in _pairs(flat).items()}

    async def cancel(self, task_id: str, owner: str, message: str | None) -> TaskRecord | None:
        self._client()
        keys = [self._key(task_id), f"{self._p}worker:", f"{self._p}signals:", f"{self._p}signalled"]
        args = [owner, repr(self._clock()), _text(message), task_id]
        flat = await self._scripts["cancel"](keys=keys, args=args)
        return _record(task_id, _pairs(flat)) if flat else None

    async def signals(self, worker: str, limit: int = 1000) -> builtins.list[tuple[str, str]]:
        if limit <= 0:
            return []
        # One RPOP with a count is atomic: two takers never get the same signal. The list is newest first.
        taken = await self._client().rpop(f"{self._p}signals:{worker}", limit) or []
        out: list[tuple[str, str]] = []
        for s in taken:
            _, kind, task_id = s.decode().split("|", 2)
            out.append((task_id, kind))
        return out

    async def heartbeat(self, worker: str, lease_s: float) -> None:
        await self._client().zadd(f"{self._p}leases", {worker: self._clock() + lease_s})

    async def expired_workers(self) -> builtins.list[str]:
        found = await self._client().zrangebyscore(f"{self._p}leases", "-inf", self._clock())
        return [w.decode() for w in found]

    async def finish(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> TaskRecord:
        if status not in TERMINAL:
            raise ValueError(f"{status} is not terminal")
        self._client()
        args = [status.value, _text(result), _text(error), _text(message), repr(self._clock()), task_id]
        flat = await self._scripts["finish"](keys=[self._key(task_id), f"{self._p}worker:"], args=args)
        if not flat:
            raise TaskNotFound(task_id)
        return _record(task_id, _pairs(flat))

    async def interrupt(
        self,
        worker: str,
        error: dict[str, Any],
        message: str,
        *,
        resumable: frozenset[str] = frozenset(),
        claimer: str | None = None,
    ) -> tuple[int, builtins.list[TaskRecord]]:
        self._client()
        keys = [f"{self._p}worker:{worker}", f"{self._p}leases", f"{self._p}worker:{claimer or ''}"]
        names = sorted(resumable) if claimer is not None else []  # no claimer: nothing resumes
        args = [_text(error), _text(message), repr(self._clock()), worker, f"{self._p}task:", claimer or "", *names]
        failed, flat = await self._scripts["interrupt"](keys=keys, args=args)
        found = sorted(
            ((_pairs(f), i.decode()) for i, f in zip(flat[::2], flat[1::2], strict=True)),
            key=lambda pair: int(pair[0][b"seq"]),
        )  # creation order, as SQLite returns them
        return int(failed), [_record(task_id, fields) for fields, task_id in found]

    async def sweep(self) -> int:
        self._client()
        now = self._clock()
        args = [
            int(now * 1000),  # expiry is in ms
            f"{self._p}task:",
            f"{self._p}owner:",
            f"{self._p}worker:",
            f"{self._p}answers:",
            f"{self._p}signals:",
            repr(now - SIGNAL_MAX_AGE_S),
        ]
        n: int = await self._scripts["sweep"](keys=[f"{self._p}expiry", f"{self._p}signalled"], args=args)
        return n
