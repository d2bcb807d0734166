"""The sector of a marketing text: consumer finance, retail, or other (keyword rules)."""

from __future__ import annotations

import re
from typing import Literal

from smsmon.contract.canonical import folded

__all__ = ["Sector", "marketing_sector"]

Sector = Literal["retail", "finance", "other"]

# Each pattern is counted once per text.  Sector nouns decide: finance terms name a credit,
# loan, instalment, deposit, wealth or insurance product (a bank or lender signature adds
# weight, so that a bank's card promotion "刷卡满减" stays finance); other-sector terms name
# a telecom, travel, education, media, health, car or housing service; retail terms name
# goods, shops and orders.  Promotion words that every sector uses (特价, 折, 红包, 秒杀)
# weigh least and only lean towards retail.
_FINANCE: tuple[tuple[re.Pattern[str], int], ...] = tuple(
    (re.compile(p), w)
    for p, w in (
        (r"借款|借钱|可借|再借|借一笔|贷款|[快网信消经]贷|放款|下款|提现", 3),
        (r"额度|提额|授信|白名单|秒批|不查征信|征信", 3),
        (r"分期|免息|利息|利率|日息|息费|低息|年化|还款券", 3),
        (r"理财|基金|申购|定投|收益|加息|体验金|存单|存款|起投|起购|业绩比较基准", 3),
        (r"保险|投保|续保|保额|保障|保费|医疗险|重疾|意外险|寿险|车险|养老金|学平险", 3),
        (r"信用卡|办卡|首刷|立减金|备用金|应急金|周转金|现金", 3),
        (r"金融", 1),
    )
)
_FINANCE_SENDER = re.compile(
    r"【[^】]*(?:银行|金融|金服|理财|基金|财富|保险|人寿|财险|借|贷|分期|钱包|信用)[^】]*】"
)
_OTHER: tuple[tuple[re.Pattern[str], int], ...] = tuple(
    (re.compile(p), w)
    for p, w in (
        (r"流量|套餐|话费|宽带|5g|来电提醒|彩铃", 3),
        (r"机票|酒店|航班|出行|旅游|[0一二三四五六七八九十]日游|寄件|寄快递|快件|取件|首重", 3),
        (r"课程|体验课|招生|报名|网课|直播课|试听|名师|资料包", 3),
        (r"影城|电影|游戏|皮肤|追剧|视频|综艺|大剧", 3),
        (r"健身|私教|体检|眼科|口腔|齿科|洗牙|种植牙|医院", 3),
        (r"购车|试驾|保养|4s|爱车|轮胎|楼盘|洋房|公寓|精装|房源|购房|售楼|样板间", 3),
    )
)
_RETAIL: tuple[tuple[re.Pattern[str], int], ...] = tuple(
    (re.compile(p), w)
    for p, w in (
        (r"商城|超市|便利|门店|到店|店铺|进店|专柜|生鲜|外卖|点餐|下单|购物|购物车|收藏|加购", 2),
        (
            r"包邮|免运费|拼团|参团|补货|上新|新品|商品|开业|品尝|订座|餐厅|美食|奶茶|茶饮|直播间|自提|团购|爆品",
            2,
        ),
        (r"\bsale\b|\boff\b|\bshop\b|\bdeals?\b", 2),
        (r"秒杀|抢购|清仓|特价|降价|爆款|买[一二]送|第二件|半价|首单|新人|消费满|保级", 1),
        (
            r"优惠券|无门槛|红包|满0?\d*减|\d+(?:\.\d+)?折|[一二三四五六七八九]折|代金券|购物金|返现",
            1,
        ),
        (r"充\d+送|会员日|积分|订单|券", 1),
    )
)


def _score(text: str, rules: tuple[tuple[re.Pattern[str], int], ...]) -> int:
    return sum(w for pattern, w in rules if pattern.search(text))


def marketing_sector(text: str) -> Sector:
    """The sector of a marketing text: `finance`, `retail` or `other`.

    Meant for texts already judged marketing (a hybrid's code or notice part is ignored by
    the weights: it carries no sector term).  Finance wins ties with retail: a promotion that
    sells both goods and credit ("12期免息") is reported as consumer finance, the category
    regulators single out.  A text with no sector term is `other`.
    """
    s = folded(text)
    finance = _score(s, _FINANCE) + (3 if _FINANCE_SENDER.search(s) else 0)
    retail = _score(s, _RETAIL)
    other = _score(s, _OTHER)
    if finance == retail == other == 0:
        return "other"
    if finance >= retail and finance >= other:
        return "finance"
    if retail >= other:
        return "retail"
    return "other"
