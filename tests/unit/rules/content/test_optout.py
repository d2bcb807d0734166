"""Unit tests for the opt-out instruction recogniser."""

from __future__ import annotations

import pytest

from smsmon.rules.content.optout import has_optout, normalise_for_optout

pytestmark = pytest.mark.unit

POSITIVES = [
    "回T退订",
    "退订回T",
    "回TD退订",
    "回复TD退订",
    "拒收请回复R",
    "退订回N",
    "回N退订",
    "退订请回复T",
    "回复T退订",
    "回0退订",
    "退订回复TD",
    "Reply STOP to unsubscribe",
    "reply stop",
    "Text STOP to opt out",
    '回复"TD"退订',
    "回复“TD”退订",
    "回复「TD」退订",
    "回复【TD】退订",
    "回复[TD]退订",
    "回复（TD）退订",
    "回复ＴＤ退订",
    "退订回Ｔ",
    "回 复 T D 退 订",
    "退 订 回 T",
    "回复td退订",
    "退订回t",
    "回t退",
    "回T退。",
    "回复TD即可退订",
    "回T即退订",
    "如需退订，请回复TD",
    "退订请回复 T",
    "拒收回R",
    "回R拒收",
    "如不想再收到此类短信，请回复TD",
    "回复“退订”即可",
    "回复\u200bTD\u200b退订",
    "【优品汇】双11大促今晚8点开抢！全场满299减50，戳 t.cn/abc123 回T退订",
    "【饭点到家】送您3张免配送费券，立即领取 dwz.cn/zGCq2l，拒收请回复R",
    "【星辰超市】周末特惠：车厘子仅售59元。退订回N",
]

NEGATIVES = [
    "",
    "退订",
    "您已成功退订该业务，退订成功",
    "【畅联移动】您已成功退订流量加油包，次月生效，感谢您的使用。",
    "您回复退订成功",
    "您的订单已发货，请留意查收",
    "订单123456已签收",
    "新款T恤限时8折，T恤买一送一",
    "回复T恤尺码即可换货",
    "回复1查询余额",
    "回复TD查询账单",
    "您的退款已到账，回T查询明细",
    "退货申请已通过",
    "回复0取消预约",
    "回T退款",
    "回复T退货",
    "退订请拨打10086",
    "如需退订请登录APP设置",
    "【华信银行】您尾号1234的储蓄卡消费人民币58.00元，余额1234.00元。",
    "Stop by our store today",
    "Reply to this message to confirm",
    "回复Y确认，回复N取消",
]


@pytest.mark.parametrize("text", POSITIVES)
def test_recognises_optout(text: str) -> None:
    assert has_optout(text), text


@pytest.mark.parametrize("text", NEGATIVES)
def test_rejects_non_optout(text: str) -> None:
    assert not has_optout(text), text


def test_normalisation_folds_width_case_quotes_and_spaces() -> None:
    assert normalise_for_optout("回 复 “Ｔ Ｄ” 退 订") == "回复td退订"
    assert normalise_for_optout("Reply STOP!") == "replystop"


def test_optout_anywhere_in_a_long_message() -> None:
    body = "【惠买网】您有一张20元无门槛优惠券待领取，仅限今日，立即领取：t.cn/Ab12Cd。" * 5
    assert not has_optout(body)
    assert has_optout(body + "退订回T")
    assert has_optout("退订回T" + body)
