"""moto's server, with its DynamoDB requests served one at a time.

moto 5.2.5 serves requests on threads, and its TransactWriteItems is not isolated: it snapshots the whole table
before the transaction, and a cancelled one (a condition that did not hold) restores that snapshot, so a write
another thread made meanwhile is lost; the snapshot itself can also fail with "dictionary changed size during
iteration" while another thread writes. DynamoDB's transactions are isolated, and the worker relies on it (its
reservation and intent are one transaction, refused whenever another worker reserved first). Serialising moto's
DynamoDB requests gives them that isolation; SQS long polls and the other services stay concurrent.

Usage: the same arguments as moto_server (scripts/emulator starts it this way).
"""

import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_serial = threading.Lock()
_call_action = DynamoHandler.call_action


def _one_at_a_time(self):
    with _serial:
        return _call_action(self)


DynamoHandler.call_action = _one_at_a_time

if __name__ == "__main__":
    main()
