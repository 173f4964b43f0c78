"""moto's server, with DynamoDB transactions that are isolated and cost what they touch.

moto 5.2.5 serves requests on threads, and its TransactWriteItems is not isolated: it snapshots every table the
transaction names before it runs, and a cancelled one (a condition that did not hold) restores that snapshot, so a
write another thread made meanwhile is lost; the snapshot itself can also fail with "dictionary changed size during
iteration" while another thread writes. DynamoDB's transactions are isolated, and the worker relies on it (its
reservation and intent are one transaction, refused whenever another worker reserved first). Serialising moto's
DynamoDB requests gives them that isolation; SQS long polls and the other services stay concurrent.

The snapshot is also a deep copy of the whole table, so each transaction costs moto time in proportion to
everything the table holds, which DynamoDB's do not: a benchmark of a transaction-based consumer then measures the
table's size. With requests serialised, a copy of the items the transaction names restores exactly what the table
snapshot did, so that is what is taken instead.

Usage: the same arguments as moto_server (scripts/emulator starts it this way).
"""

import copy
import threading

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_serial = threading.Lock()
_call_action = DynamoHandler.call_action
_transact_write_items = DynamoDBBackend.transact_write_items


def _one_at_a_time(self):
    with _serial:
        return _call_action(self)


class _CopyButTables:
    """`copy` as moto's DynamoDB backend sees it: tables are not copied (transactions copy their own items)."""

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _target(backend, member):
    """The table, hash and range key a transaction member writes, or None."""
    _, operation = next(iter(member.items()))
    table = backend.tables.get(operation.get("TableName"))
    key = operation.get("Key") or operation.get("Item") or {}
    if table is None or table.hash_key_attr not in key:
        return None
    range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
    return table, DynamoType(key[table.hash_key_attr]), range_value


def _transact_with_item_snapshots(self, transact_items):
    saved = []
    for member in transact_items:
        target = _target(self, member)
        if target is not None:
            table, hash_value, range_value = target
            saved.append((table, hash_value, range_value, copy.deepcopy(table.get_item(hash_value, range_value))))
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table, hash_value, range_value, item in reversed(saved):
            if range_value is None and item is None:
                table.items.pop(hash_value, None)
            elif range_value is None:
                table.items[hash_value] = item
            elif item is None:
                table.items[hash_value].pop(range_value, None)
            else:
                table.items[hash_value][range_value] = item
        raise


DynamoHandler.call_action = _one_at_a_time
dynamodb_models.copy = _CopyButTables
DynamoDBBackend.transact_write_items = _transact_with_item_snapshots

if __name__ == "__main__":
    main()
