"""Message texts: templates per sector and category, subscriber replies, complaint bodies.

Every random value in a text is drawn from the run's traffic stream, one field after the other
in alphabetical order of the field names, so a text depends on the seed and nothing else.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from smsmon.tools.simulator.kinds import MKT, NTF
from smsmon.tools.simulator.population import Enterprise

OPTOUTS = ("回T退订", "回TD退订", "退订回T", "拒收请回复R", "回复TD退订", "退订回N")
URLS = tuple(f"https://t.cn/A6{i:05x}" for i in range(0, 4096, 37))
CITIES = ("北京", "上海", "广州", "深圳", "杭州", "成都", "三亚", "西安", "重庆", "厦门")
UNSUBSCRIBE_TEXTS = (
    "TD", "T", "td", "退订", "退订！", "Ｔ", "TD退订", "别再发了，退订", "R", "取消",
    "拒收", "N", "stop",
)  # fmt: skip
REPLY_TEXTS = ("好的", "收到", "谢谢", "1", "Y", "已收到，谢谢", "怎么还没发货", "？")
COMPLAINT_TEXTS = (
    "未经同意发送营销短信",
    "回复退订后仍然收到",
    "每天多条广告骚扰",
    "从未注册过该平台却收到推销",
    None,
)
"""What a complainant writes; the last, None, is a complaint without a text."""
DLR_STATUSES = ("DELIVRD",) * 95 + ("UNDELIV",) * 3 + ("EXPIRED", "REJECTD")

MARKETING: dict[str, tuple[str, ...]] = {
    "shop": (
        "【{s}】会员日全场满{a}减{b}，叠加券更划算，戳 {url} {opt}",
        "【{s}】您关注的商品降价啦，限时{pct}折，库存有限，速抢 {url} {opt}",
        "【{s}】新人专享{b}元无门槛券已到账，3天内有效 {url} {opt}",
    ),
    "bank": (
        "【{s}】尊敬的客户，您有一笔最高{a}00元的信用额度待领取，详询手机银行 {opt}",
        "【{s}】信用卡积分兑换季开启，{a}积分兑好礼，登录APP参与 {opt}",
    ),
    "delivery": ("【{s}】寄件享{pct}折，首单立减{b}元，下单 {url} {opt}",),
    "travel": (
        "【{s}】{city}往返机票{a}元起，周末出游正当时 {url} {opt}",
        "【{s}】会员专享：{city}酒店{pct}折起，限时{m}天 {opt}",
    ),
    "food": ("【{s}】今日{b}元神券已发放，点击领取 {url} {opt}",),
    "finance": ("【{s}】新客理财专享，{m}天期产品火热认购中 {url} {opt}",),
    "service": ("【{s}】周末特惠，到店消费满{a}减{b} {url} {opt}",),
}
DOUBLE11 = (
    "【{s}】双11预售今晚20点开启，付定金{b}抵{a}，前1小时下单再享{pct}折 {url} {opt}",
    "【{s}】双11狂欢倒计时！跨店每满300减50，付尾款立享 {url} {opt}",
    "【{s}】双11红包雨20点开抢，最高{a}元，记得来 {url} {opt}",
)
NOTIFICATION: dict[str, tuple[str, ...]] = {
    "shop": (
        "【{s}】您的订单{order}已发货，运单号{waybill}，请注意查收。",
        "【{s}】您的退款{b}元已原路退回，请留意账户变动。",
    ),
    "bank": (
        "【{s}】您尾号{tail}的储蓄卡{hhmm}支出人民币{amt}元，余额请以APP为准。",
        "【{s}】您尾号{tail}的信用卡本期账单{amt}元，到期还款日{day}日。",
    ),
    "delivery": (
        "【{s}】您的快递已到驿站，取件码{code4}，请于今日取件。",
        "【{s}】您的包裹{waybill}正在派送中，快递员电话请在APP查看。",
    ),
    "travel": (
        "【{s}】您预订的{city}行程已出票，订单号{order}，请提前到达。",
        "【{s}】您的{city}酒店订单已确认，入住日{day}日。",
    ),
    "food": ("【{s}】骑手已接单，预计{m}分钟送达，订单号{order}。",),
    "finance": ("【{s}】您的保单{order}将于{day}日续费，金额{amt}元。",),
    "service": ("【{s}】您的预约已确认，订单号{order}，请准时到店。",),
}
VERIFICATION = (
    "【{s}】您的验证码为{code}，{m}分钟内有效，请勿泄露给他人。",
    "【{s}】验证码：{code}，您正在登录，若非本人操作请忽略。",
    "您的验证码是{code}，{m}分钟内有效。【{s}】",
)
UNSIGNED_NOTIFICATION = ("您的订单{order}已发货，请注意查收。", "您的预约已确认，请准时到店。")


def _field_generators(r: Callable[[], float]) -> dict[str, Callable[[], object]]:
    return {
        "a": lambda: (100, 200, 300, 500, 1000)[int(r() * 5)],
        "b": lambda: (5, 10, 20, 30, 50)[int(r() * 5)],
        "pct": lambda: ("5", "6.8", "7", "8", "8.8", "9")[int(r() * 6)],
        "url": lambda: URLS[int(r() * len(URLS))],
        # about 5% of marketing carries no opt-out (content.optout_missing, another rule)
        "opt": lambda: "" if r() < 0.05 else OPTOUTS[int(r() * len(OPTOUTS))],
        "city": lambda: CITIES[int(r() * len(CITIES))],
        "m": lambda: (3, 5, 10, 15)[int(r() * 4)],
        "order": lambda: f"{int(r() * 1e12):012d}",
        "waybill": lambda: f"YT{int(r() * 1e13):013d}",
        "tail": lambda: f"{int(r() * 1e4):04d}",
        "hhmm": lambda: f"{int(r() * 24):02d}:{int(r() * 60):02d}",
        "amt": lambda: f"{r() * 3000:.2f}",
        "day": lambda: 1 + int(r() * 28),
        "code": lambda: f"{int(r() * 1e6):06d}",
        "code4": lambda: f"{1 + int(r() * 9)}-{1 + int(r() * 9)}-{1000 + int(r() * 9000)}",
    }


class Texts:
    """Fills templates with a signature and fresh random values.

    `boost` is the current Double 11 marketing multiplier, kept up to date by the background
    traffic: while it is high, most marketing is a Double 11 promotion.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.boost = 1.0
        self._generators = _field_generators(rng.random)
        self._template_fields: dict[str, tuple[tuple[str, Callable[[], object]], ...]] = {}

    def fill(self, template: str, sig: str) -> str:
        """The template with signature `sig` and fresh random values for its other fields."""
        fields = self._template_fields.get(template)
        if fields is None:
            names = {f for _, f, _, _ in string.Formatter().parse(template) if f and f != "s"}
            fields = tuple((n, self._generators[n]) for n in sorted(names))
            self._template_fields[template] = fields
        values = {name: gen() for name, gen in fields}
        values["s"] = sig
        return template.format_map(values).rstrip()

    def marketing(self, e: Enterprise) -> str:
        """A promotion of `e` (banks have no Double 11 sale)."""
        r = self.rng.random
        tpls: tuple[str, ...]
        if self.boost > 1.5 and e.sector != "bank" and r() < 0.7:
            tpls = DOUBLE11
        else:
            tpls = MARKETING[e.sector]
        return self.fill(tpls[int(r() * len(tpls))], e.name)

    def notification(self, e: Enterprise, sig: str | None = None) -> str:
        """A notification of `e`'s sector, signed `sig` (default: `e`'s signature)."""
        tpls = NOTIFICATION[e.sector]
        return self.fill(tpls[int(self.rng.random() * len(tpls))], sig or e.name)

    def verification(self, sig: str) -> str:
        """A verification code message signed `sig`."""
        return self.fill(VERIFICATION[int(self.rng.random() * len(VERIFICATION))], sig)

    def unsigned_notification(self) -> str:
        """A notification without any signature."""
        tpl = UNSIGNED_NOTIFICATION[int(self.rng.random() * len(UNSIGNED_NOTIFICATION))]
        return self.fill(tpl, "")

    def of(self, e: Enterprise, c: int) -> str:
        """A text of category `c` from `e`."""
        if c == MKT:
            return self.marketing(e)
        if c == NTF:
            return self.notification(e)
        return self.verification(e.name)
