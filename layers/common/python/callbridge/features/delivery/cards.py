"""Live call cards: their own lane, never in the way of a call.

A card message (callbridge.core.live.message) is shown by its CRM's `LiveCards` capability. Cards are
best-effort and useful for seconds, so this lane differs from the calls' on purpose:
- never retried: a failed send is logged and counted (LiveCardsFailed); a redelivered message would
  show the card minutes after the phone stopped ringing;
- stale cards are not sent (LiveCardsLate): a ringing or answered card whose call has ended by the
  time it is taken (final, or its end event came), or one that a newer card of the same call and
  user in the same batch supersedes. The end of a call (retailCRM `hangup`, Bitrix24 hiding the
  card) is always sent: it closes whatever is still shown;
- sent concurrently: the cards of one call go in order (`in` before `hangup`), the calls in parallel,
  so a busy minute's cards take the time of the slowest call's, not the sum.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from callbridge import registry
from callbridge.core import live
from callbridge.core.accounts import Account, UnknownAccount, get_account
from callbridge.core.config import CrmSettings
from callbridge.crm.base import LiveCards, with_secrets
from callbridge.infra.observability import in_context, logger
from callbridge.store import deliveries as store
from callbridge.store.calls import call_key

OPEN_STAGES = ("ringing", "answered")  # cards that show a call as going on
# Cards of different calls sent at once. Each waits on its CRM (up to its 5 s timeout), not on CPU;
# the DynamoDB client's pool (10 connections) is shared with the crm_calls reads of Bitrix24 cards.
CARD_WORKERS = 8


@dataclass
class CardReport:
    sent: int = 0
    failed: int = 0  # the CRM did not take it, or sending it raised: dropped, never retried
    late: int = 0  # stale when taken: its call had ended, or a newer card of the call replaced it

    def add(self, other: CardReport) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.late += other.late

    def metrics(self) -> dict[str, int]:
        return {"LiveCardsFailed": self.failed, "LiveCardsLate": self.late}


@dataclass(frozen=True)
class Card:
    account: str
    crm: str
    message: dict[str, Any] = field(hash=False)
    position: int = 0  # its place in the batch: the order of cards of the same moment

    @property
    def body(self) -> dict[str, Any]:
        body = self.message.get("live")
        return body if isinstance(body, dict) else {}

    @property
    def stage(self) -> str:
        return str(self.body.get("stage") or "")

    @property
    def call_id(self) -> str:
        return str(self.body.get("call_id") or "")

    @property
    def users(self) -> frozenset[str]:
        return frozenset(str(u) for u in self.body.get("users") or ())

    def sort_key(self) -> tuple[str, int]:
        # ISO UTC times sort as text; a card without a time keeps its place in the batch.
        return (str(self.body.get("at") or ""), self.position)


def parse(body: str, position: int = 0) -> Card | None:
    """A card message, or None (logged) when it is not one we can show."""
    try:
        message = json.loads(body)
        account_id, crm_name = str(message["account"]), str(message["crm"])
    except (ValueError, TypeError, KeyError):
        logger().error("malformed call card message dropped")
        return None
    if not isinstance(message, dict) or message.get("kind") != live.KIND:
        logger().error("a message that is no call card dropped from the card queue")
        return None
    if not isinstance(message.get("live"), dict) and not isinstance(message.get("event"), dict):
        logger().error("call card message without an event dropped")
        return None
    return Card(account_id, crm_name, message, position)


def show_messages(bodies: Iterable[str]) -> CardReport:
    """One batch of the card queue (message bodies). Never fails a message (see the module)."""
    cards = [card for position, body in enumerate(bodies) if (card := parse(body, position)) is not None]
    return show(cards)


def show(cards: list[Card]) -> CardReport:
    """Show the cards that are still current, each call's in order, the calls concurrently."""
    report = CardReport()
    lanes: dict[tuple[str, str, str], list[tuple[Account, CrmSettings, Card]]] = defaultdict(list)
    by_account: dict[str, list[Card]] = defaultdict(list)
    for card in cards:
        by_account[card.account].append(card)
    for account_id, group in by_account.items():
        try:
            account = get_account(account_id)
        except UnknownAccount:
            logger().error("call card of an unknown account dropped")
            continue
        except Exception:
            logger().exception("could not read the account of call cards; dropped")
            report.failed += len(group)
            continue
        current = _current(account_id, group)
        report.late += len(group) - len(current)
        for card in current:
            crm = account.settings.crm(card.crm)
            if crm is None:
                logger().warning("call card for a CRM the account no longer has", extra={"crm": card.crm})
                continue
            lanes[(account_id, card.crm, card.call_id)].append((account, crm, card))
    for outcome in _in_parallel(list(lanes.values())):
        report.add(outcome)
    return report


def _current(account_id: str, cards: list[Card]) -> list[Card]:
    """The cards worth sending, oldest first: no open card of a call that has ended, nor one that a
    newer card of the same call, CRM and user replaces."""
    ordered = sorted(cards, key=Card.sort_key)
    ended = _ended_calls(account_id, [c.call_id for c in ordered if c.stage in OPEN_STAGES])
    return [
        card
        for index, card in enumerate(ordered)
        if not (card.stage in OPEN_STAGES and card.call_id in ended)
        and not any(_replaces(newer, card) for newer in ordered[index + 1 :])
    ]


def _replaces(newer: Card, older: Card) -> bool:
    """Whether `newer` makes `older` pointless. A ringing card: any newer card of the same call
    and user (the phone was answered, stopped or rang again). An answered card only by a newer
    answer: it also closes the other users' cards (Bitrix24, for a PBX that ends no other leg),
    which the answering user's own end would not."""
    if (newer.crm, newer.call_id) != (older.crm, older.call_id):
        return False
    same_user = bool(newer.users & older.users) or not older.users
    if older.stage == "ringing":
        return same_user
    return older.stage == "answered" and newer.stage == "answered" and same_user


def _ended_calls(account_id: str, call_ids: list[str]) -> set[str]:
    """The calls among `call_ids` that have ended (final - delivered or on its way - or their end
    event came); one batch read. Best-effort like the cards: a failed read shows them."""
    wanted = [c for c in dict.fromkeys(call_ids) if c]
    if not wanted:
        return set()
    try:
        found = store.get_items([call_key(account_id, c) for c in wanted])
    except Exception:
        logger().exception("could not read the calls of live cards")
        return set()
    return {str(i["call_id"]) for i in found if i.get("call_id") and (i.get("final") or i.get("completed_at"))}


def _in_parallel(lanes: list[list[tuple[Account, CrmSettings, Card]]]) -> list[CardReport]:
    if len(lanes) <= 1:
        return [_send_lane(lane) for lane in lanes]
    run = in_context(_send_lane)
    with ThreadPoolExecutor(max_workers=min(CARD_WORKERS, len(lanes))) as pool:
        return list(pool.map(run, lanes))


def _send_lane(lane: list[tuple[Account, CrmSettings, Card]]) -> CardReport:
    """One call's cards to one CRM, in order: a card that fails does not stop the next (its end)."""
    report = CardReport()
    for account, crm, card in lane:
        try:
            shown = _show(account, crm, card.message)
        except Exception:
            logger().exception("a live call card failed; not retried", extra={"crm": crm.name})
            report.failed += 1
            continue
        if shown:
            report.sent += 1
        else:
            report.failed += 1
    return report


def _show(account: Account, crm: CrmSettings, message: dict[str, Any]) -> bool:
    if not live.has_live_cards(crm):
        return True  # switched off since the card was queued
    cards = registry.crm_capability(crm.kind, LiveCards)
    if cards is None:
        return True
    return cards.send_live(account, with_secrets(account.id, crm), message)
