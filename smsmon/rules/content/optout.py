"""Recognise an opt-out (unsubscribe) instruction in the text of an SMS."""

from __future__ import annotations

import re
import unicodedata

from smsmon.contract.canonical import CharTable, folded

__all__ = ["has_optout", "normalise_for_optout"]

# Reply codes carriers and platforms accept for "stop sending me this".  Longer
# alternatives come first so that "td" is not read as "t" followed by junk.
_CODE = r"(?:td|qx|stop|t|n|r|0)"
# The verb that introduces the code: 回, 回复, 发, 发送, 短信回复, 编辑.
_VERB = r"(?:短信回复|回复|发送|编辑|回|发)"
# Words meaning "unsubscribe / refuse".  A bare 退 is accepted only right after the
# code (回T退) and never when it begins 退款, 退货, 退还 and the like.
_ACT_AFTER = r"(?:退订|退定|拒收|取消订阅|不再接收|退(?![款货还换费票房租钱出学休回]))"
_ACT_BEFORE = (
    r"(?:退订|退定|拒收|取消订阅|不再接收|"
    r"不(?:想|愿|希望)?再?(?:收到|接收)(?:此类|本类|该类|类似|我们的)?(?:短信|信息|消息)?)"
)
# Filler allowed between the unsubscribe word and the verb: 退订请回复T, 拒收可回R.
_FILL = r"(?:请您|请|您可|可以|可|即可|直接|短信|信息|服务|的话)*"
_THEN = r"(?:即可|就可以|就可|可|以|即|便可)?"

_OPTOUT = re.compile(
    "|".join(
        (
            # 回T退订, 回复TD退订, 回N退订, 回0退订, 回复TD即可退订, 回T退, 回R拒收
            rf"{_VERB}{_CODE}{_THEN}{_ACT_AFTER}",
            # 退订回T, 退订回复TD, 退订请回复T, 拒收请回复R, 如不想再收到请回复TD
            rf"{_ACT_BEFORE}{_FILL}{_VERB}{_CODE}(?![a-z0-9])",
            # 回复“退订” (reply with the word itself); not the confirmation 回复退订成功
            r"回复退订(?!成功|已|请求|申请)",
            # reply STOP, text STOP, reply TD to unsubscribe, STOP to opt out
            r"(?:reply|text|txt|send)(?:stop|unsubscribe|td|t)(?![a-z])",
            r"stopto(?:unsubscribe|optout|endmessages|cancel)",
        )
    )
)

# Everything removed before matching: whitespace, punctuation (quotes, brackets,
# commas, full stops) and invisible format characters (zero-width space and joiners).
_DROPPED_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})


def _kept(cp: int) -> int | None:
    """`_DROP`'s value: None for a character normalise_for_optout drops, else itself."""
    ch = chr(cp)
    cat = unicodedata.category(ch)
    keep = not ch.isspace() and cat not in _DROPPED_CATEGORIES and not cat.startswith("P")
    return cp if keep else None


_DROP = CharTable(_kept)


def normalise_for_optout(text: str) -> str:
    """Return `text` in the form the opt-out patterns are written against.

    NFKC (full-width ＴＤ becomes td, full-width punctuation becomes ASCII), case-fold,
    then drop whitespace, punctuation (quotes, brackets, colons, commas) and
    zero-width characters, so that 回复 “Ｔ Ｄ” 退订 reads 回复td退订.
    """
    return folded(text).translate(_DROP)


def has_optout(text: str) -> bool:
    """True if `text` carries an opt-out instruction such as 回T退订 or 拒收请回复R.

    Recognised: a reply code (T, TD, N, R, 0, QX, STOP) introduced by 回/回复/发送
    and followed by 退订/拒收/退 (回复TD退订, 回T退), the reverse order with optional
    filler (退订回T, 退订请回复TD, 拒收请回复R, 如不想再收到请回复TD), replying
    the word 退订 itself, and the English "reply STOP".  Quotes, brackets, spaces,
    full-width letters and case do not matter.  Other ways to unsubscribe (calling a
    hotline, an app setting) are not recognised.
    """
    return _OPTOUT.search(normalise_for_optout(text)) is not None
