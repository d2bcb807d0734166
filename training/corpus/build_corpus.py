"""Generate the synthetic labelled SMS corpus sms_corpus.jsonl from templates (seeded)."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smsmon.rules.content.classifier import mask_text

SEED = 20240601
CORPUS = Path(__file__).with_name("sms_corpus.jsonl")
ROWS_PER_FAMILY = {"marketing": 14, "notification": 14, "verification": 18}

# --------------------------------------------------------------------------- slots
# Every sender name below is invented for this corpus; none is a real brand.
BRANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ec": ("ecommerce", ("优品汇", "惠买网", "拼好物", "喜购商城", "乐淘优选", "好物集市")),
    "food": ("food_delivery", ("速达外卖", "饭点到家", "快食送", "美味速递")),
    "retail": ("retail", ("星辰超市", "惠邻便利", "衣尚坊", "美妆集", "佳家购物广场")),
    "resto": ("food_delivery", ("蜀香小馆", "老街火锅", "禾风茶饮")),
    "fin": ("finance", ("安心借", "易贷通", "恒信理财", "钱袋宝")),
    "bank": ("banking", ("华信银行", "汇通银行", "民丰银行", "东海农商银行")),
    "ins": ("insurance", ("安泰保险", "康宁人寿", "平顺财险")),
    "travel": ("travel", ("途悦旅行", "畅游网", "云程出行")),
    "air": ("travel", ("蓝天航空", "云程航空")),
    "rail": ("travel", ("铁路出行", "城际铁路")),
    "hotel": ("travel", ("悦居酒店", "栖云酒店", "如归连锁酒店")),
    "ride": ("travel", ("快车出行", "顺风约车")),
    "logi": ("logistics", ("速运快递", "顺达物流", "闪电快递", "邻里驿站")),
    "tel": ("telecom", ("畅联移动", "星网通信", "华通电信")),
    "edu": ("education", ("学而优教育", "启航网校")),
    "school": ("education", ("第一实验小学", "阳光幼儿园", "育才中学")),
    "estate": ("real_estate", ("锦绣华府", "滨江壹号院")),
    "auto": ("automotive", ("驰骋汽车", "远航汽车4S店")),
    "health": ("healthcare", ("仁和医院", "康健体检中心", "市第一人民医院")),
    "app": ("entertainment", ("乐玩游戏", "趣看短视频", "悠米社区")),
    "video": ("entertainment", ("追剧视频", "乐影视频")),
    "cinema": ("entertainment", ("星光影城", "银幕国际影城")),
    "comm": ("retail", ("邻里优选", "社区鲜团")),
    "hr": ("recruitment", ("才聚招聘", "云程科技人力资源部")),
}
CITY_SENDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "gov_hrss": ("government", ("人社局", "社保中心")),
    "gov_police": ("government", ("反诈中心", "公安局")),
    "gov_traffic": ("government", ("交警支队", "交警")),
    "gov_tax": ("government", ("税务局", "税务")),
    "gov_weather": ("government", ("气象台", "气象局")),
    "gov_cdc": ("government", ("疾控中心", "卫健委")),
    "gov_service": ("government", ("政务服务", "12345热线")),
    "util": ("utilities", ("燃气", "水务集团", "供电公司")),
}
# Brand slots that a verification code may come from ({any}).
ANY_SENDER = ("ec", "food", "fin", "bank", "travel", "tel", "app", "video", "health", "ride", "ins")
CITIES = ("杭州", "成都", "南京", "武汉", "西安", "长沙", "郑州", "青岛", "苏州", "合肥", "厦门")
PRODUCTS = {
    "ec": (
        "蓝牙耳机",
        "空气炸锅",
        "羽绒服",
        "运动鞋",
        "扫地机器人",
        "保温杯",
        "纯棉四件套",
        "洗衣凝珠",
        "零食大礼包",
        "行李箱",
        "护肤套装",
        "电动牙刷",
    ),
    "food": ("麻辣香锅", "黄焖鸡米饭", "轻食沙拉", "奶茶", "炸鸡汉堡", "小龙虾", "牛肉面"),
    "retail": ("鲜牛奶", "车厘子", "洗发水", "大米", "食用油", "连衣裙", "口红", "面膜"),
    "comm": ("沃柑", "土鸡蛋", "五常大米", "猕猴桃", "草莓", "鲜虾"),
}
EN_PRODUCTS = ("sneakers", "headphones", "skincare sets", "winter coats", "coffee makers")
GIFTS = ("精美保温杯", "环保购物袋", "电影票", "定制帆布包", "10元话费", "品牌雨伞", "新年台历")
EVENTS = ("618", "双11", "双12", "年货节", "周年庆", "会员日", "开学季", "国庆", "女神节", "年中")
ANCHORS = ("小美", "阿杰", "甜甜", "老王")
CARS = ("驰骋X5", "远航SUV", "星途轿跑", "新能源小巴")
COURSES = ("Python入门直播课", "初中数学提高班", "雅思口语精讲", "财务报表分析课")
MOVIES = ("星河彼岸", "长夜将明", "山海之约", "追风少年")
PACKAGES = ("5G畅享套餐", "流量加油包", "视频彩铃业务", "来电提醒业务", "千兆宽带")
KEYWORDS = ("KTLL", "BLDJ", "5G", "1", "8", "JY")
ROADS = ("人民路与解放路交叉口", "建设大道", "中山北路", "科技园南路", "滨江大道")
STORES = ("万达店", "中山路店", "高新区旗舰店", "大学城店")
STATIONS = ("邻里驿站(幸福小区店)", "小区东门快递柜", "学校南门代收点", "物业服务中心")
COURIERS = ("王师傅", "李师傅", "张师傅", "刘师傅")
ROOMS = ("高级大床房", "豪华双床房", "行政套房")
DOCTORS = ("张医生", "李主任", "王医生")
NAMES = ("尊敬的会员", "亲爱的用户", "您好", "尊敬的客户", "张先生", "李女士", "亲")
OPTOUTS = (
    "回T退订",
    "退订回T",
    "拒收请回复R",
    "回TD退订",
    "退订回N",
    "回复TD退订",
    "退订请回复T",
    "回N退订",
    "退订回复TD",
    "回0退订",
    "回复“TD”退订",
    "退订回Ｔ",
    "回T退",
)
URL_HOSTS = ("yph", "hmw", "phw", "xgsc", "ltyx", "hwjs", "sdwm", "fdjd", "txlv", "clyd")


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _url(rng: random.Random) -> str:
    host = rng.choice(URL_HOSTS)
    style = rng.randrange(5)
    if style == 0:
        return f"t.cn/{_alnum(rng, 7)}"
    if style == 1:
        return f"https://m.{host}.com/{_alnum(rng, 6)}"
    if style == 2:
        return f"dwz.cn/{_alnum(rng, 6)}"
    if style == 3:
        return f"{host}.cn/{_alnum(rng, 5)}"
    return f"http://s.{host}.top/a/{_alnum(rng, 6)}"


def _date(rng: random.Random) -> str:
    m, d = rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice((f"{m:02d}月{d:02d}日", f"{m}月{d}日", f"2024-{m:02d}-{d:02d}"))


def _time(rng: random.Random) -> str:
    return f"{rng.randint(7, 22):02d}:{rng.choice((0, 10, 15, 20, 30, 40, 45, 50)):02d}"


def _amount(rng: random.Random) -> str:
    v = rng.choice((rng.randint(19, 999), rng.randint(100, 9999)))
    return rng.choice((str(v), f"{v}.00", f"{v}.{_digits(rng, 2)}"))


def _pct(rng: random.Random) -> str:
    return rng.choice(("8折", "7.5折", "五折", "5折", "6.8折", "9折", "三折", "2折"))


SIMPLE: dict[str, Callable[[random.Random], str]] = {
    "url": _url,
    "date": _date,
    "date2": _date,
    "time": _time,
    "amt": _amount,
    "amt2": _amount,
    "amt_s": lambda r: str(r.choice((3, 5, 8, 10, 15, 20, 30, 50, 66, 88, 100))),
    "m1": lambda r: str(r.choice((39, 59, 99, 199, 299, 399))),
    "m2": lambda r: str(r.choice((5, 10, 20, 30, 50, 100))),
    "big": lambda r: str(r.choice((5000, 20000, 50000, 80000, 200000))),
    "pct": _pct,
    "code": lambda r: _digits(r, r.choice((4, 6, 6, 6))),
    "min": lambda r: str(r.choice((5, 10, 15, 30))),
    "tail": lambda r: _digits(r, 4),
    "order": lambda r: _digits(r, r.choice((12, 15, 18))),
    "order2": lambda r: r.choice(("SF", "YT", "ZT", "")) + _digits(r, 12),
    "n": lambda r: str(r.randint(2, 9)),
    "hours": lambda r: str(r.choice((24, 48, 72))),
    "points": lambda r: str(r.randint(100, 9000)),
    "points2": lambda r: str(r.randint(1000, 20000)),
    "rate": lambda r: r.choice(("2.35", "3.1", "3.85", "4.2", "2.8")),
    "year": lambda r: r.choice(("2023", "2024")),
    "month": lambda r: str(r.randint(1, 12)),
    "hotline": lambda r: r.choice(
        ("95" + _digits(r, 3), "400-" + _digits(r, 3) + "-" + _digits(r, 4))
    ),
    "phone": lambda r: "1" + r.choice("3578") + _digits(r, 1) + "****" + _digits(r, 4),
    "pickup": lambda r: f"{r.randint(1, 9)}-{r.randint(1, 6)}-{_digits(r, 4)}",
    "flight": lambda r: r.choice(("LT", "YC", "BS")) + _digits(r, 4),
    "train": lambda r: r.choice("GDK") + str(r.randint(10, 9999)),
    "seat": lambda r: f"{r.randint(1, 16):02d}车{r.randint(1, 20):02d}{r.choice('ABCDF')}座",
    "gate": lambda r: f"{r.choice('ABC')}{r.randint(1, 60)}",
    "plate": lambda r: r.choice("浙川苏鄂陕湘豫鲁皖闽") + r.choice("ABCDE") + _alnum(r, 5).upper(),
    "hall": lambda r: f"{r.randint(1, 9)}号厅{r.randint(1, 12)}排{r.randint(1, 20)}座",
    "city": lambda r: r.choice(CITIES),
    "city2": lambda r: r.choice(CITIES),
    "product": lambda r: r.choice(PRODUCTS["ec"] + PRODUCTS["retail"]),
    "food_item": lambda r: r.choice(PRODUCTS["food"]),
    "comm_item": lambda r: r.choice(PRODUCTS["comm"]),
    "gift": lambda r: r.choice(GIFTS),
    "en_product": lambda r: r.choice(EN_PRODUCTS),
    "event": lambda r: r.choice(EVENTS),
    "anchor": lambda r: r.choice(ANCHORS),
    "car": lambda r: r.choice(CARS),
    "course": lambda r: r.choice(COURSES),
    "movie": lambda r: r.choice(MOVIES),
    "pkg": lambda r: r.choice(PACKAGES),
    "kw": lambda r: r.choice(KEYWORDS),
    "road": lambda r: r.choice(ROADS),
    "station": lambda r: r.choice(STATIONS),
    "store": lambda r: r.choice(STORES),
    "courier": lambda r: r.choice(COURIERS),
    "room": lambda r: r.choice(ROOMS),
    "doctor": lambda r: r.choice(DOCTORS),
    "name": lambda r: r.choice(NAMES),
}

# --------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    """One template family: a label, the category a sender would declare, and phrasings."""

    fid: str
    label: str
    declared: str
    templates: tuple[str, ...]
    optout_rate: float = 0.0


def _m(fid: str, *templates: str, declared: str = "marketing", optout: float = 0.65) -> Family:
    return Family(fid, "marketing", declared, templates, optout)


def _n(fid: str, *templates: str, optout: float = 0.0) -> Family:
    return Family(fid, "notification", "notification", templates, optout)


def _v(fid: str, *templates: str) -> Family:
    return Family(fid, "verification", "verification", templates)


FAMILIES: tuple[Family, ...] = (
    # ---- marketing, declared as marketing
    _m(
        "mkt-ec-bigsale",
        "【{ec}】[[亲|尊敬的会员|您好]]，{event}大促[[今晚8点|明日0点|即将]]开抢！全场"
        "[[满{m1}减{m2}|低至{pct}|{pct}起]]，[[爆款|大牌|好物]]{product}[[直降{amt_s}元|限时秒杀|"
        "买一送一]]，[[戳|点击|速抢]] {url}",
    ),
    _m(
        "mkt-ec-coupon",
        "【{ec}】您有一张{amt_s}元无门槛优惠券[[待领取|即将到账|已备好]]，[[仅限今日|{hours}小时内有效|"
        "数量有限]]，[[立即领取|点击领取|马上使用]]：{url}",
        "【{ec}】[[送您|专属]]{amt_s}元[[神券|优惠券|红包]]，满{m1}可用，[[今日|本周]]到期[[别错过|速用]]"
        " {url}",
    ),
    _m(
        "mkt-ec-pricedrop",
        "【{ec}】{name}，[[您收藏的|您关注的|购物车里的]]{product}降价啦！现价仅{amt}元，"
        "[[比加购时便宜{amt_s}元|限时特惠|库存紧张]]，[[速来抢购|手慢无|赶紧下单]] {url}",
    ),
    _m(
        "mkt-ec-flash",
        "【{ec}】限时抢购！{product}[[{pct}|秒杀价{amt}元|第二件0元]]，[[仅剩最后{n}小时|前{n}00名"
        "再送赠品|每人限购{n}件]]，[[抢购|下单|进店]]戳 {url}",
    ),
    _m(
        "mkt-ec-newuser",
        "【{ec}】新人专享：注册即送{amt_s}元红包[[+免邮卡|，首单立减{amt_s}元|+{n}张优惠券]]，"
        "[[下载APP|打开小程序|登录]]立即领取 {url}",
    ),
    _m(
        "mkt-ec-groupbuy",
        "【{ec}】拼团{event}[[来了|火热进行中|开启]]！{product}{n}人拼团价{amt}元，[[邀请好友|"
        "分享给好友]]一起拼[[更划算|再减{amt_s}元]]，[[点此参团|马上开团]]{url}",
    ),
    _m(
        "mkt-ec-livestream",
        "【{ec}】今晚{time}{anchor}直播间[[宠粉福利|专场]]：{product}[[直播价{amt}元|{pct}]]，"
        "[[整点抽免单|下单赠{gift}|福袋抢不停]]，[[锁定直播|预约直播]]{url}",
    ),
    _m(
        "mkt-food-redpacket",
        "【{food}】[[饿了吗|肚子饿了吗]]？[[午餐|晚餐|下午茶|夜宵]]红包已到账：满{m1}减{m2}，"
        "[[今日有效|仅限{time}前使用|限时{hours}小时]]，[[去点餐|马上下单|立即使用]]{url}",
    ),
    _m(
        "mkt-food-membercard",
        "【{food}】{name}，会员[[周卡|月卡]]限时{amt_s}元开通，[[每单立减|天天领]]{amt_s}元"
        "[[红包|券]]，[[再送|加赠]]免配送费特权，[[戳|点击]]{url}开通",
    ),
    _m(
        "mkt-food-winback",
        "【{food}】[[好久不见|想你了|很久没见到你啦]]！送您{n}张[[满减券|免配送费券|新品尝鲜券]]，"
        "{food_item}低至{amt_s}元，[[回来看看|快来下单|立即领取]]{url}",
    ),
    _m(
        "mkt-retail-supermarket",
        "【{retail}】{date}起[[周末|店庆|会员日]]特惠：{product}[[仅售{amt}元|买二送一|第二件半价]]，"
        "[[会员积分翻倍|满{m1}送{gift}|凭短信领{gift}]]，[[欢迎光临|详询门店|地址见小程序]]",
    ),
    _m(
        "mkt-retail-fashion",
        "【{retail}】[[春夏|秋冬|换季]]新品上市，[[全场|新品]]{pct}[[起|，满{m1}再减{m2}]]！"
        "[[老顾客|VIP会员]]到店再享专属礼遇，[[活动截止{date}|仅限本周末]]",
    ),
    _m(
        "mkt-retail-beauty",
        "【{retail}】{name}，您的专属会员礼已备好：{product}[[买一送一|体验装免费领|到店即赠]]，"
        "[[{event}期间|本月]]全场{pct}，[[预约到店|线上商城]]{url}",
    ),
    _m(
        "mkt-fin-loan",
        "【{fin}】{name}，您获得最高{big}元[[备用金|借款]]额度，[[日息低至0.02%|首期免息|"
        "最快3分钟到账]]，[[立即查看|马上提现|点击激活]]{url}",
    ),
    _m(
        "mkt-fin-wealth",
        "【{fin}】[[新客专享|限时加息|年末冲刺]]：{n}0天[[理财|稳健型产品]]{rate}%[[预期年化|"
        "业绩比较基准]]，{amt}元起购，[[额度有限|售完即止]]，[[抢购|了解详情]]{url}",
    ),
    _m(
        "mkt-bank-cardoffer",
        "【{bank}】[[尊敬的客户|您好]]，刷本行信用卡[[享周五{pct}|满{m1}立减{m2}|加油每升立减{n}毛]]，"
        "[[活动|优惠]]至{date}，[[名额有限|每户限享{n}次]]，详询{hotline}",
    ),
    _m(
        "mkt-bank-cardapply",
        "【{bank}】[[诚邀您|恭喜您获得资格]]申请本行[[白金卡|联名卡|车主卡]]，[[首年免年费|"
        "新户礼{gift}|消费达标送{gift}]]，[[一键申请|立即办理]]{url}",
    ),
    _m(
        "mkt-ins-medical",
        "【{ins}】{name}，[[仅需{amt_s}元/月|每天不到一杯咖啡钱]]，[[百万医疗险|意外险|重疾险]]"
        "保障全家，[[限时免费升级|首月0元|投保送体检卡]]，[[了解详情|立即投保]]{url}",
    ),
    _m(
        "mkt-travel-flights",
        "【{travel}】[[特价机票|早鸟价]]来袭！{city}往返{city2}[[低至{amt}元|{pct}起]]，"
        "[[{event}出行|暑期|国庆]]抢先订，[[限量|手慢无]]{url}",
    ),
    _m(
        "mkt-travel-hotel",
        "【{hotel}】[[会员日|周年庆|{event}]]酒店[[套餐|房券]]{amt}元起，[[含双早|可升级房型|"
        "赠下午茶]]，[[今晚|{date}]]0点开抢 {url}",
    ),
    _m(
        "mkt-tel-plan",
        "【{tel}】[[尊敬的客户|您好]]，[[5G|宽带|流量]]套餐限时[[{pct}|优惠{amt_s}元/月]]，"
        "[[每月加送{n}GB流量|办理送{gift}|升级千兆宽带]]，回复{kw}办理，[[详询|或拨打]]{hotline}",
    ),
    _m(
        "mkt-edu-enrol",
        "【{edu}】[[暑期班|秋季班|寒假班]]火热招生！[[{n}节体验课仅{amt_s}元|报名立减{amt}元|"
        "老学员续报{pct}]]，[[名额有限|先到先得]]，[[扫码|点击]]预约{url}",
    ),
    _m(
        "mkt-estate-flat",
        "【{estate}】[[城芯|地铁口|湖景]]精装[[三房|洋房|公寓]]，首付{n}0万起，[[{event}|本周末]]"
        "到访即送{gift}，[[限时特价|{n}套特惠房源]]，热线{hotline}",
    ),
    _m(
        "mkt-auto-sale",
        "【{auto}】[[新车到店|购车节|年终钜惠]]：{car}[[限时优惠{n}万|0首付|置换补贴{n}万]]，"
        "到店试驾送{gift}，[[地址|详询]]{hotline}",
    ),
    _m(
        "mkt-health-checkup",
        "【{health}】[[父母|全家|入职]]体检套餐[[限时{pct}|{amt}元起]]，[[加赠{gift}|预约即送"
        "早餐券]]，[[名额有限|活动至{date}]]，预约{url}",
    ),
    _m(
        "mkt-ec-points",
        "【{ec}】[[会员专享|超级会员日|粉丝福利]]：签到领{n}倍积分，积分[[抵现|兑换{gift}|当钱花]]，"
        "[[今日|本周]]下单再[[返{amt_s}元|抽免单]]，{url}",
    ),
    _m(
        "mkt-resto-open",
        "【{resto}】[[新店开业|周年庆|{event}]]，[[全场{pct}|凭短信送{gift}|双人套餐{amt}元]]，"
        "[[欢迎品尝|订座电话{hotline}|地址详见{url}]]",
    ),
    _m(
        "mkt-app-game",
        "【{app}】[[回归有礼|新版本上线|限时活动]]！登录即领[[{gift}|{n}连抽|豪华礼包]]，"
        "[[充值返利{n}0%|首充双倍|限定皮肤{pct}]]，[[立即下载|马上体验]]{url}",
    ),
    _m(
        "mkt-video-vip",
        "【{video}】[[年卡|季卡]]会员[[限时{amt}元|直降{amt_s}元|买一年送{n}个月]]，[[热门大剧抢先看|"
        "独家综艺免费看]]，[[续费|开通]]戳{url}",
    ),
    _m(
        "mkt-ec-brandsale",
        "【{ec}】[[FLASH SALE|大牌闪购|品牌特卖]]{time}开始，{product}[[{pct}|{amt}元包邮]]，"
        "[[限量{n}00件|售完即止]]，[[提醒我|去看看]]{url}",
    ),
    _m(
        "mkt-comm-groupbuy",
        "【{comm}】[[社区团购|邻里优选]]今日爆品：{comm_item}{amt_s}元{n}斤，[[今晚{time}前下单|"
        "明日到自提点]]，[[抢|买]]{url}",
    ),
    _m(
        "mkt-bank-installment",
        "【{bank}】[[您的信用卡|您]]可享账单分期[[手续费{pct}|费率低至0.5%起|免息{n}期]]活动，"
        "[[限时|{date}前]]办理[[回复FQ|登录APP]]即可，[[详询|咨询]]{hotline}",
    ),
    _m(
        "mkt-tel-bonus",
        "【{tel}】[[尊敬的客户|您好]]，[[您已获得|恭喜获得]][[{n}GB流量券|宽带提速特权|{amt_s}元话费券]]，"
        "[[办理{pkg}|升级5G套餐]]即可使用，[[回复{kw}确认办理|发送{kw}到{hotline}办理]]，"
        "[[优惠期|活动截止]]至{date}",
    ),
    _m(
        "mkt-tel-recharge",
        "【{tel}】[[充值季|话费狂欢节]]：充{m1}元送{m2}元，[[仅限本月|限时{n}天]]，[[点击|戳]]{url}充值",
    ),
    _m(
        "mkt-auto-care",
        "【{auto}】[[秋季|冬季|夏日]]爱车养护节：[[机油保养{pct}|工时费全免|轮胎买三送一]]，[[预约到店|"
        "凭此短信]]再送{gift}，活动至{date}，{hotline}",
    ),
    _m(
        "mkt-estate-showroom",
        "【{estate}】[[样板间|售楼处]][[盛大开放|全新亮相]]，[[购房享{pct}|总价直降{n}万|首付分期]]，"
        "[[到访送{gift}|认筹即送家电]]，地址：{road}",
    ),
    _m(
        "mkt-ec-english",
        "【{ec}】[[Flash deal|Big sale|Member day]]: up to [[50|70|30]]% off {en_product}"
        "[[ today only| this weekend|]]! [[Shop now|Grab it]] {url}",
    ),
    _m(
        "mkt-ins-critical",
        "【{ins}】[[健康告知宽松|0免赔]]，[[{n}0岁以下可投|全家共享保额]]，[[首年{amt_s}元|月缴{amt_s}元起]]，"
        "[[限时特惠|活动仅剩{n}天]]，[[点击投保|了解]]{url}",
    ),
    _m(
        "mkt-fin-preapproved",
        "【{fin}】{name}，[[信用评估通过|您已预审通过]]，可领取[[{big}元额度|免息券]]，[[今日领取|领取后]]"
        "再送[[{amt_s}元还款券|7天免息]]，{url}",
    ),
    _m(
        "mkt-edu-freebie",
        "【{edu}】[[0元|{amt_s}元]]领取[[{course}|名师精讲资料包]]，[[限前{n}00名|今晚{time}直播开讲]]，"
        "[[报名|预约]]戳{url}",
    ),
    _m(
        "mkt-retail-storecoupon",
        "【{retail}】{name}，[[{amt_s}元代金券|满{m1}减{m2}券]]已放入您的会员账户，[[本周末|{date}前]]到店"
        "[[消费|购物]]即可使用，[[更有|另有]]{product}[[特价|{pct}]]",
    ),
    _m(
        "mkt-logi-send",
        "【{logi}】[[寄件就找我们|寄快递更省心]]：[[首重{amt_s}元起|同城{n}元寄]]，[[新用户首单立减{amt_s}元|"
        "{event}寄件{pct}]]，[[上门取件|预约下单]]{url}",
    ),
    _m(
        "mkt-health-dental",
        "【{health}】[[口腔|齿科]]{event}：[[洗牙{amt_s}元|种植牙{pct}|矫正立减{n}000元]]，[[预约即送{gift}|"
        "名额仅剩{n}个]]，{hotline}",
    ),
    # ---- marketing disguised as a notification (declared notification)
    _m(
        "mkt-as-notif-walletcredit",
        "【{ec}】[[账户通知|系统通知|到账提醒]]：您的账户已到账{amt_s}元[[购物金|红包|无门槛券]]，"
        "将于[[今晚24点|{date}]]过期，[[请尽快使用|逾期作废]]，[[点此使用|查看]]{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-shipped-upsell",
        "【{ec}】订单{order}已发货[[，感谢您的支持|]]。[[再下一单享|本店回购]]{pct}，"
        "[[进店|新品上架]]{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-credit-raise",
        "【{fin}】[[额度提升通知|审批结果通知]]：恭喜您，借款额度已提升至{big}元，[[限时免息{n}天|"
        "今日提现享利率{pct}]]，[[立即提现|点击领取]]{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-data-upsell",
        "【{tel}】[[流量提醒|用量提醒]]：您本月流量已用{n}0%，[[加{amt_s}元得{n}GB|限时特惠流量包{pct}]]"
        "，回复{kw}[[立即办理|即可订购]]",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-points-expiry",
        "【{ec}】[[积分到期提醒|积分通知]]：您有{points}积分将于{date}清零，[[可兑换{gift}|"
        "抵扣{amt_s}元]]，[[更有{event}好礼|新品{pct}]]等你来，[[立即兑换|速兑]]{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-delivered-coupon",
        "【{food}】[[配送完成|订单已送达]]，祝您用餐愉快！[[下单返的|送您]]{n}张满{m1}减{m2}"
        "[[红包|券]]已放入账户，[[明天|{hours}小时内]]再点[[更划算|立享优惠]]{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-trip-upgrade",
        "【{travel}】[[行程提醒|出行通知]]：您预订的{city}酒店[[明日入住|已确认]]。[[加{amt_s}元"
        "升级豪华房|机票+酒店套餐{pct}]]，[[限时特惠|仅限今天]]{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-bank-coupon",
        "【{bank}】[[服务通知|温馨提示]]：尊敬的客户，您已获得[[专属|限时]]{rate}%[[加息券|"
        "优惠利率]]，[[购买指定理财|存入{amt}元以上]]即可使用，[[名额有限|数量有限]]，{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-policy-freebie",
        "【{ins}】[[保单服务通知|续保提醒]]：{name}，[[您的家人|您]]可[[免费领取|0元领]]{n}个月"
        "[[意外险|住院保障]]，[[领取后升级|再享]]百万医疗[[仅需{amt_s}元|{pct}]]，{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-member-upgrade",
        "【{retail}】[[会员通知|重要通知]]：您的会员[[等级已升级|生日礼包已到账]]，[[到店消费享{pct}|"
        "凭码领{gift}|全场满{m1}减{m2}]]，[[本周内有效|至{date}止]]",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-referral",
        "【{app}】[[系统消息|通知]]：您的好友[[邀请您|为您]]助力成功，[[再邀{n}人|差最后一步]]即可"
        "[[免费领取{gift}|提现{amt_s}元]]，[[立即查看|去领取]]{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-tel-bonus",
        "【{tel}】[[服务提醒|账户提醒]]：您的[[{n}GB流量|{amt_s}元话费]]赠送资格[[即将过期|已激活]]，"
        "[[办理{pkg}|回复{kw}]]即可[[领取|享受]]，[[月费仅需{amt_s}元|首月免费]]",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-car-care",
        "【{auto}】[[保养提醒|年检提醒]]：您的爱车[[已到保养周期|即将到期年检]]，[[本月到店享{pct}|"
        "预约即送{gift}|工时费全免]]，[[名额有限|活动至{date}]]，预约{hotline}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-review-cashback",
        "【{ec}】[[订单已签收|交易成功]]，[[评价晒单|五星好评]]即返{amt_s}元[[红包|无门槛券]]，[[同款{product}"
        "今日{pct}|店铺上新全场{pct}]]，{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-renewal-discount",
        "【{video}】[[会员到期提醒|续费提醒]]：您的会员将于{date}到期，[[现在续费立享{pct}|续费年卡立减"
        "{amt_s}元]]，[[仅限{hours}小时|限时优惠]]，{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-bill-installment",
        "【{bank}】[[账单提醒|还款提醒]]：本期账单{amt}元，[[办理分期享手续费{pct}|使用APP还款抽{gift}]]，"
        "[[点击办理|立即参与]]{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-parcel-coupon",
        "【{logi}】您的快件已签收。[[寄件新客专享|下单寄件立减]]{amt_s}元，[[{event}寄快递{pct}|"
        "首单{amt_s}元寄全国]]，{url}",
        declared="notification",
        optout=0.1,
    ),
    _m(
        "mkt-as-notif-cover-upgrade",
        "【{ins}】[[保障到期提醒|服务提醒]]：您的{n}份保障将于{date}到期，[[现在升级{pct}|升级百万保额"
        "仅需{amt_s}元]]，[[限时|名额有限]]{url}",
        declared="notification",
        optout=0.1,
    ),
    # ---- marketing appended to a verification code (declared verification)
    _m(
        "mkt-as-code-ec-newuser",
        "【{ec}】验证码{code}，{min}分钟内有效[[，请勿泄露|]]。[[新人专享|首单]][[立减{amt_s}元|"
        "{pct}]]，[[戳|点击]]{url}",
        declared="verification",
        optout=0.1,
    ),
    _m(
        "mkt-as-code-food-redpacket",
        "【{food}】您的登录验证码是{code}。[[今日|本周]]会员[[红包|神券]][[最高{amt_s}元|"
        "满{m1}减{m2}]]，[[记得领取|去领]]{url}",
        declared="verification",
        optout=0.1,
    ),
    _m(
        "mkt-as-code-fin-credit",
        "【{fin}】验证码：{code}（{min}分钟有效）。[[恭喜获得|您有]]{big}元[[借款额度|备用金]]待领取，"
        "[[立即提现|查看]]{url}",
        declared="verification",
        optout=0.1,
    ),
    _m(
        "mkt-as-code-travel-deal",
        "{code}是您的[[注册|身份]]验证码[[，有效期{min}分钟|]]。【{travel}】[[机票{pct}起|"
        "酒店满{m1}减{m2}]]，[[限时特惠|新客专享]]{url}",
        declared="verification",
        optout=0.1,
    ),
    _m(
        "mkt-as-code-tel-plan",
        "【{tel}】您的验证码为{code}。[[加{amt_s}元办{n}GB流量|5G套餐{pct}]]，回复{kw}办理",
        declared="verification",
        optout=0.1,
    ),
    _m(
        "mkt-as-code-ec-sale",
        "【{ec}】{code}（验证码，{min}分钟有效）。[[{event}狂欢|会员日]]：[[全场{pct}|爆款满{m1}减{m2}]]，"
        "[[速抢|马上逛]]{url}",
        declared="verification",
        optout=0.1,
    ),
    _m(
        "mkt-as-code-tel-coupon",
        "【{tel}】[[动态密码|随机码]]{code}，[[请勿泄露|{min}分钟有效]]。[[您有一张{n}GB流量券待领取|"
        "话费充{m1}送{m2}]]，[[回复{kw}领取|点击{url}]]",
        declared="verification",
        optout=0.1,
    ),
    _m(
        "mkt-as-code-app-gift",
        "【{app}】验证码{code}，{min}分钟有效。[[新用户登录送{gift}|首次登录领{n}天会员]]，[[快来|立即]]体验"
        "{url}",
        declared="verification",
        optout=0.1,
    ),
    _m(
        "mkt-as-code-bank-card",
        "【{bank}】[[验证码|动态码]]{code}，[[请勿泄露|{min}分钟内有效]]。[[办卡享{gift}|新户首刷返{amt_s}元]]，"
        "[[详询|申请]]{url}",
        declared="verification",
        optout=0.1,
    ),
    # ---- notifications (including hard negatives that mention coupons, 优惠, links)
    _n(
        "ntf-logi-arrived",
        "【{logi}】您的快递已到达{station}，取件码{pickup}，[[请于{date}前取件|营业时间08:00-21:00]]，"
        "[[查看详情|物流详情]]{url}",
    ),
    _n(
        "ntf-logi-delivering",
        "【{logi}】[[您好|尊敬的客户]]，您的包裹(运单号{order2})[[正在派送中|已由快递员{courier}揽收]]，"
        "[[派送员电话|快递员电话]]{phone}，[[如有疑问请联系|请保持电话畅通]]",
    ),
    _n(
        "ntf-logi-failed",
        "【{logi}】您的快件{order2}因[[地址不详|无人签收|天气原因]]派送[[失败|延迟]]，[[请点击|可通过]]"
        "{url}[[修改地址|预约派送时间]]或拨打{hotline}",
    ),
    _n(
        "ntf-ec-shipped",
        "【{ec}】您的订单{order}已[[发货|出库]]，[[快递运单号|物流单号]]{order2}，[[预计{date}送达|"
        "请留意查收]]。",
    ),
    _n(
        "ntf-ec-refund-coupon",
        "【{ec}】您的退款申请已通过，{amt}元将[[原路退回|在1-3个工作日内退回]]，订单使用的{amt_s}元"
        "优惠券已[[退回您的账户|返还至券包]]，有效期至{date}。",
    ),
    _n(
        "ntf-ec-return",
        "【{ec}】您[[申请的|提交的]]退货[[已签收|已审核通过]]，退款{amt}元[[已到账|将于24小时内到账]]，"
        "[[请注意查收|如有疑问请联系在线客服]]。",
    ),
    _n(
        "ntf-ec-priceprotect",
        "【{ec}】价保申请成功：[[您购买的|订单中的]]{product}[[因活动降价|价格调整]]，差价{amt_s}元"
        "已退至[[原支付账户|您的余额]]。",
    ),
    _n(
        "ntf-ec-paid",
        "【{ec}】您已成功支付{amt}元，订单号{order}，[[优惠券抵扣|已使用优惠]]{amt_s}元，"
        "[[如非本人操作|若有疑问]]请[[及时联系|联系]]客服{hotline}。",
    ),
    _n(
        "ntf-food-rider",
        "【{food}】您的订单已[[被骑手接单|开始配送]]，骑手{courier}[[电话|联系电话]]{phone}，"
        "预计{time}送达。",
    ),
    _n(
        "ntf-food-cancelled",
        "【{food}】您的订单因商家[[暂停营业|备货不足]]已取消，{amt}元[[将原路退回|已退回]]，"
        "[[使用的红包已返还|红包已退回账户]]。",
    ),
    _n(
        "ntf-bank-txn",
        "【{bank}】您尾号{tail}的[[储蓄卡|借记卡|账户]]{date}{time}[[支出|转入|消费]]人民币{amt}元，"
        "余额{amt2}元。",
    ),
    _n(
        "ntf-bank-bill",
        "【{bank}】您尾号{tail}信用卡本期账单{amt}元，最低还款{amt_s}元，到期还款日{date}。"
        "[[本期已享受分期手续费优惠|您参与的刷卡优惠返现已入账]]，详询{hotline}。",
    ),
    _n(
        "ntf-bank-card",
        "【{bank}】[[您的|尊敬的客户，您的]]信用卡[[已激活|年费{amt_s}元已收取|额度已调整为{big}元]]，"
        "[[如有疑问请致电|详询]]{hotline}。",
    ),
    _n(
        "ntf-bank-security",
        "【{bank}】您正在[[办理|进行]][[转账|网银登录|绑定新设备]]，[[如非本人操作|若非本人操作]]请立即"
        "致电{hotline}[[冻结账户|]]。[[银行工作人员不会向您索要验证码|谨防诈骗]]。",
    ),
    _n(
        "ntf-fin-repay",
        "【{fin}】[[还款提醒|温馨提示]]：您的借款本期应还{amt}元，还款日{date}，请确保[[尾号{tail}的|]]"
        "银行卡余额充足，[[逾期将影响征信|以免产生逾期]]。",
    ),
    _n(
        "ntf-ins-policy",
        "【{ins}】您的保单{order}[[已生效|续保成功|已承保]]，保费{amt}元，保障期限至{date}，"
        "[[电子保单|保单详情]]可[[登录官网|在APP]]查询。",
    ),
    _n(
        "ntf-ins-claim",
        "【{ins}】您的理赔案件{order}[[已结案|审核通过]]，赔款{amt}元已[[支付至|转入]]尾号{tail}账户。",
    ),
    _n(
        "ntf-air-change",
        "【{air}】[[航班变动|出行提醒]]：您预订的{date}{flight}航班（{city}-{city2}）"
        "[[起飞时间调整为{time}|延误，预计{time}起飞|登机口变更为{gate}]]，[[给您带来不便敬请谅解|"
        "如需改签请拨打{hotline}]]。",
    ),
    _n(
        "ntf-rail-ticket",
        "【{rail}】[[订票成功|购票成功]]：{date}{train}次{city}-{city2}，{seat}，[[开车时间|发车]]{time}"
        "，请[[提前到站|携带有效证件乘车]]。",
    ),
    _n(
        "ntf-hotel-booking",
        "【{hotel}】您已成功预订{date}入住的{room}，[[订单号|确认号]]{order}，[[入住时间14:00后|"
        "退房时间12:00前]]，[[如需取消请提前1天|如有变更请致电{hotline}]]。",
    ),
    _n(
        "ntf-ride-fare",
        "【{ride}】[[您的行程已结束|行程结束]]，[[本次|实付]]车费{amt}元[[（已抵扣优惠券{amt_s}元）|]]，"
        "[[如有遗失物品|对行程有疑问]]请联系客服。",
    ),
    _n(
        "ntf-gov-pension",
        "【{gov_hrss}】[[您的|尊敬的参保人，您的]]养老保险[[{year}年度|本年度]]缴费[[已到账|"
        "基数已核定]]，[[如有疑问|详询]]请拨打12333。",
    ),
    _n(
        "ntf-gov-antifraud",
        "【{gov_police}】[[提醒|温馨提示]]：[[刷单返利|冒充客服退款|网络贷款]]都是诈骗！"
        "[[不转账|不透露验证码|不点陌生链接]]，[[如遇可疑情况|接到可疑电话]]请拨打96110。",
    ),
    _n(
        "ntf-gov-traffic",
        "【{gov_traffic}】您的车辆{plate}于{date}在{road}[[违停|超速]]，[[请于15日内处理|"
        "请及时处理]]，[[可通过|登录]]交管APP办理。",
    ),
    _n(
        "ntf-gov-tax",
        "【{gov_tax}】[[您{year}年度个人所得税汇算|个税年度汇算]][[已办理完成|退税{amt}元已到账]]，"
        "[[详情|如有疑问]]请登录个人所得税APP查询。",
    ),
    _n(
        "ntf-gov-weather",
        "【{gov_weather}】[[暴雨|大风|高温]][[黄色|橙色|蓝色]]预警：预计{date} {time}起[[有强降雨|"
        "最高气温38℃|阵风8级]]，请[[减少外出|注意防范|做好防护]]。",
    ),
    _n(
        "ntf-health-appointment",
        "【{health}】您已成功预约{date}{time}[[内科|口腔科|体检中心]]{doctor}号，就诊序号{n}，"
        "请[[携带身份证|提前15分钟]]到院[[取号|签到]]。",
    ),
    _n(
        "ntf-tel-balance",
        "【{tel}】[[尊敬的客户|您好]]，截至{date}，您的话费余额为{amt_s}元，[[为避免停机|请及时充值]]，"
        "[[可通过APP缴费|详询{hotline}]]。",
    ),
    _n(
        "ntf-tel-usage",
        "【{tel}】您本月[[套餐内流量|国内通用流量]]已使用{n}0%，剩余{n}GB，[[以上信息仅供参考|"
        "详情请查询账单]]。",
    ),
    _n(
        "ntf-tel-ordered",
        "【{tel}】您已成功[[办理|订购]]{pkg}，[[次月生效|立即生效]]，月费{amt_s}元。"
        "[[如需退订请发送QX到{hotline}|详询{hotline}]]。",
    ),
    _n(
        "ntf-util-bill",
        "【{util}】您户号{order}[[{month}月燃气费|本期水费|电费]]{amt}元，[[请于{date}前缴纳|"
        "已自动扣款成功]]，[[逾期将产生滞纳金|感谢您的配合]]。",
    ),
    _n(
        "ntf-school",
        "【{school}】[[家长您好|尊敬的家长]]，[[明天|{date}]]学校[[召开家长会|放假|举行运动会]]，"
        "[[请准时参加|请提醒孩子|请按时接送]]，[[具体安排|详情]]见班级群。",
    ),
    _n(
        "ntf-retail-points",
        "【{retail}】您于{date}消费{amt}元，获得积分{points}，当前可用积分{points2}，"
        "[[积分有效期至{date2}|感谢您的光临]]。",
    ),
    _n(
        "ntf-retail-coupon-used",
        "【{retail}】您的{amt_s}元[[优惠券|代金券]]已于{date} {time}在[[{store}|门店]]核销，"
        "[[如非本人使用|若有疑问]]请联系{hotline}。",
    ),
    _n(
        "ntf-tel-unsubscribed",
        "【{tel}】您已成功退订{pkg}，[[次月|即时]]生效，[[感谢您的使用|如有疑问请拨打{hotline}]]。",
    ),
    _n(
        "ntf-app-login",
        "【{app}】您的账号于{date}{time}在[[新设备|{city}]]登录，[[如非本人操作|若不是您本人]]请"
        "[[立即修改密码|及时冻结账号]]。",
    ),
    _n(
        "ntf-cinema-ticket",
        "【{cinema}】[[取票码|电影票兑换码]]{code}，{date}{time}《{movie}》{hall}，请提前[[10|15]]分钟"
        "取票入场。",
    ),
    _n(
        "ntf-auto-service",
        "【{auto}】[[您的爱车|车牌{plate}的车辆]]已完成[[保养|维修]]，费用{amt}元，[[可到店提车|"
        "请于{time}前提车]]，[[感谢您的信任|如有疑问请致电{hotline}]]。",
    ),
    _n(
        "ntf-logi-signed",
        "【{logi}】您的快件已签收，[[签收人：本人|签收人：{station}]]，[[感谢使用|如有疑问请联系快递员]]，"
        "[[评价快递员|查看签收照片]]{url}",
    ),
    _n(
        "ntf-ins-premium-due",
        "【{ins}】[[续期缴费提醒|温馨提示]]：您的保单{order}应缴保费{amt}元，缴费日{date}，"
        "[[请确保扣款账户余额充足|宽限期60天]]。",
    ),
    _n(
        "ntf-bank-mortgage-rate",
        "【{bank}】[[根据监管要求|因市场利率调整]]，您的房贷利率自{date}起调整为{rate}%，"
        "[[原优惠利率条款不变|利率优惠期限不变]]，月供{amt}元，详询{hotline}。",
    ),
    _n(
        "ntf-edu-class",
        "【{edu}】您报名的{course}将于{date}{time}开课，[[上课链接|直播地址]]{url}，[[请准时参加|"
        "请提前调试设备]]。",
    ),
    _n(
        "ntf-gov-vaccine",
        "【{gov_cdc}】[[您预约的|您家孩子的]]疫苗接种时间为{date}，请[[携带接种本|按时]]前往"
        "[[社区卫生服务中心|预防接种门诊]]接种。",
    ),
    _n(
        "ntf-hr-interview",
        "【{hr}】{name}，您的面试安排在{date}{time}，地点{road}，请携带简历准时参加[[，收到请回复1|]]。",
    ),
    _n(
        "ntf-bank-english",
        "【{bank}】[[Your card ending {tail} was charged|A payment was made:]] CNY {amt}"
        "[[ at {time}|]]. [[If this was not you, call {hotline}.|Available balance CNY {amt2}.]]",
    ),
    _n(
        "ntf-logi-english",
        "【{logi}】Your parcel {order2} [[has been delivered|is out for delivery]]. "
        "[[Track it at {url}|Courier: {phone}]]",
    ),
    _n(
        "ntf-health-confirm",
        "【{health}】您预约的{date} {time}[[复诊|体检]]即将开始，"
        "[[回复1确认，回复2取消|确认请回复Y，取消请回复N]][[，如需改期请致电{hotline}|]]",
    ),
    _n(
        "ntf-tel-planchange",
        "【{tel}】[[您的套餐变更申请已受理|您办理的套餐变更已确认]]，{pkg}将于[[次月1日|{date}]]生效，"
        "[[月费{amt_s}元|套餐内含{n}GB流量]]，[[详询{hotline}|感谢您的使用]]。",
    ),
    _n(
        "ntf-tel-bill",
        "【{tel}】您{month}月[[账单|消费]]{amt_s}元，[[其中套餐费{amt_s}元|已从余额扣除]][[，优惠减免{n}元"
        "已生效|]]，[[详情回复CXZD查询|可在APP查看明细]]。",
    ),
    _n(
        "ntf-auto-recall",
        "【{auto}】[[召回通知|服务通知]]：您的{car}[[在召回范围内|需免费更换部件]]，请于{date}前预约到店，"
        "[[全程免费|相关费用由厂家承担]]，{hotline}",
    ),
    _n(
        "ntf-estate-property",
        "【{estate}物业】[[停水通知|停电通知|电梯维保通知]]：{date} {time}起[[小区|{n}号楼]]"
        "暂停[[供水|供电|使用]]，[[请提前做好准备|给您带来不便敬请谅解]]。",
    ),
    _n(
        "ntf-fin-disbursed",
        "【{fin}】您申请的借款{amt}元已[[发放|到账]]至尾号{tail}银行卡，[[首期还款日{date}|借款期限{n}个月]]，"
        "[[请按时还款|可在APP查看还款计划]]。",
    ),
    _n(
        "ntf-ec-aftersale",
        "【{ec}】您的售后申请已完成，[[赠品{gift}无需退回|补偿{amt_s}元无门槛券已发放至账户]]，[[如有疑问请"
        "联系客服|感谢您的耐心等待]]。",
    ),
    _n(
        "ntf-bank-points-redeemed",
        "【{bank}】您已成功使用{points}积分兑换{gift}，[[剩余积分{points2}|兑换订单号{order}]]，[[预计{n}个"
        "工作日内寄出|请留意物流信息]]。",
    ),
    _n(
        "ntf-resto-booking",
        "【{resto}】您已成功预订{date} {time}[[{n}人桌|包间]]，"
        "[[请准时到店|如需取消请提前致电{hotline}]]，[[到店出示此短信|预订号{code}]]。",
    ),
    _n(
        "ntf-air-checkin",
        "【{air}】[[值机提醒|出行提醒]]：{date}{flight}航班已开放[[网上值机|在线选座]]，[[请登录APP办理|"
        "办理链接{url}]]，[[请提前90分钟到达机场|登机口于起飞前20分钟关闭]]。",
    ),
    _n(
        "ntf-gov-ticket",
        "【{gov_service}】[[您反映的问题|您的诉求]][[已受理|已办结]]，[[工单号|受理编号]]{order}，"
        "[[办理结果可登录{url}查询|如有疑问请拨打12345]]。",
    ),
    _n(
        "ntf-tel-topup",
        "【{tel}】您已成功充值{amt_s}元[[（含赠送{n}元）|]]，当前余额{amt}元，[[感谢您的使用|详询{hotline}]]。",
    ),
    # ---- verification codes
    _v(
        "ver-basic",
        "【{any}】验证码{code}，[[{min}分钟内有效|有效期{min}分钟]]，[[请勿泄露给他人|切勿告诉他人]]。",
    ),
    _v(
        "ver-purpose",
        "【{any}】您的验证码是{code}，用于[[登录|注册|修改密码|身份验证]]，{min}分钟内有效。"
        "[[如非本人操作，请忽略本短信|]]",
    ),
    _v(
        "ver-code-first",
        "{code}（{any}验证码），[[请在{min}分钟内完成验证|{min}分钟内有效]]。[[工作人员不会向您索取，"
        "请勿泄露|]]",
    ),
    _v(
        "ver-bank-payment",
        "【{bank}】您正在进行[[网上支付|转账|快捷支付]]，金额{amt}元，验证码{code}，[[请勿向任何人泄露|"
        "工作人员不会索取]]。",
    ),
    _v(
        "ver-bind-phone",
        "【{any}】[[动态密码|校验码]]：{code}。您正在[[绑定手机|更换手机号]]，[[切勿泄露|请妥善保管]]"
        "[[，如非本人操作请忽略|]]",
    ),
    _v(
        "ver-english",
        "【{any}】[[Your verification code is|Verification code:]] {code}. [[It expires in {min} "
        "minutes.|Valid for {min} min.]][[ Do not share it.|]]",
    ),
    _v(
        "ver-gov",
        "【{gov_service}】您正在[[办理|申请]][[社保查询|公积金提取|电子证照]]业务，验证码{code}，"
        "{min}分钟内有效。",
    ),
    _v(
        "ver-login-confirm",
        "【{any}】[[登录确认码|安全码]]{code}，[[您正在新设备上登录|您正在重置支付密码]]，"
        "[[若非本人操作请立即修改密码|请勿转发]]。",
    ),
    _v(
        "ver-signature-last",
        "[[尊敬的用户|您好]]，您的[[短信|手机]]验证码为：{code}，[[请于{min}分钟内输入|{min}分钟内有效]]。"
        "【{any}】",
    ),
    _v(
        "ver-ec-quicklogin",
        "【{ec}】您正在使用[[手机号|短信]]快捷登录，验证码{code}，[[有效期{min}分钟|{min}分钟内有效]]，"
        "[[请勿告知他人|谨防诈骗]]。",
    ),
    _v(
        "ver-food",
        "【{food}】{code}是您的[[登录|下单]]验证码，{min}分钟内有效，[[骑手和客服不会索要验证码|"
        "请勿泄露]]。",
    ),
    _v(
        "ver-travel",
        "【{travel}】[[您的订单|您正在操作]]验证码：{code}，用于[[确认预订|取消订单|办理值机]]，"
        "[[请在{min}分钟内使用|{min}分钟有效]]。",
    ),
    _v(
        "ver-tel",
        "【{tel}】您正在[[办理|查询]][[详单|业务]]，[[随机密码|短信验证码]]为{code}，{min}分钟内有效，"
        "[[请勿泄露|切勿告知他人]]。",
    ),
    _v(
        "ver-fin",
        "【{fin}】[[借款|提现|还款]]验证码{code}，[[金额{amt}元，|]][[请勿将验证码提供给任何人|"
        "警惕冒充客服诈骗]]。",
    ),
    _v(
        "ver-bind-email",
        "【{any}】[[邮箱|账号]]绑定验证码：{code}，[[{min}分钟内有效|请尽快完成验证]]。",
    ),
    _v(
        "ver-ins",
        "【{ins}】您正在[[签署电子保单|进行保单查询|申请理赔]]，验证码{code}，[[如非本人操作请忽略|"
        "请勿泄露]]。",
    ),
    _v(
        "ver-logi-pickup",
        "【{logi}】[[您的签收验证码|签收码]]{code}，请[[在快递员派送时出示|当面交给快递员]]，"
        "[[请勿提前告知他人|签收前请确认货物完好]]。",
    ),
    _v(
        "ver-app-2fa",
        "【{app}】[[您的安全验证码|二次验证码]]是 {code}，[[用于确认本人操作|仅用于本次验证]]。"
        "[[如有疑问请联系客服|]]",
    ),
    _v(
        "ver-register",
        "【{any}】验证码：{code}。[[您正在注册成为新用户|欢迎注册]]，[[感谢您的支持|请勿泄露]]！",
    ),
    _v(
        "ver-bank-dynamic",
        "【{bank}】尊敬的客户，您的[[交易|登录]][[动态码|验证码]]为{code}，[[任何人索取验证码均为诈骗|"
        "请勿透露给他人]][[，如非本人操作请致电{hotline}|]]",
    ),
    _v(
        "ver-edu",
        "【{edu}】您正在[[登录学习平台|报名考试|重置密码]]，验证码{code}，{min}分钟内有效。",
    ),
    _v(
        "ver-english-otp",
        "【{any}】{code} is your [[login|sign-in|one-time]] code. "
        "[[Never share this code.|Expires in {min} minutes.]]",
    ),
    _v(
        "ver-realname",
        "【{any}】您正在[[申请|进行]][[实名认证|人脸识别核验]]，短信校验码{code}，[[有效期{min}分钟|"
        "请于{min}分钟内完成]]。",
    ),
    _v(
        "ver-payment-confirm",
        "【{ec}】您正在[[支付订单|确认收货]]，金额{amt}元，[[短信验证码|校验码]]{code}，[[请勿泄露|"
        "{min}分钟内有效]]。",
    ),
    _v(
        "ver-health",
        "【{health}】您正在[[预约挂号|查询报告]]，验证码{code}，{min}分钟内有效，[[请勿泄露|"
        "如非本人操作请忽略]]。",
    ),
)

# --------------------------------------------------------------------------- rendering
_ALT = re.compile(r"\[\[(.*?)\]\]", re.S)
_SLOT = re.compile(r"\{(\w+)\}")
_SENDER_SLOT = re.compile(r"\{(" + "|".join([*BRANDS, *CITY_SENDERS, "any"]) + r")\}")


def _sender(key: str, rng: random.Random) -> tuple[str, str]:
    """Return (signature text, domain) for a sender slot."""
    if key == "any":
        key = rng.choice(ANY_SENDER)
    if key in BRANDS:
        domain, names = BRANDS[key]
        return rng.choice(names), domain
    domain, suffixes = CITY_SENDERS[key]
    return rng.choice(CITIES) + rng.choice(suffixes), domain


def render(family: Family, rng: random.Random) -> tuple[str, str]:
    """Render one message of `family`: returns (text, domain of the sender)."""
    template = rng.choice(family.templates)
    text = _ALT.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    domains: list[str] = []

    def sender(m: re.Match[str]) -> str:
        name, domain = _sender(m.group(1), rng)
        domains.append(domain)
        return name

    text = _SENDER_SLOT.sub(sender, text)
    text = _SLOT.sub(lambda m: SIMPLE[m.group(1)](rng), text)
    if family.optout_rate and rng.random() < family.optout_rate:
        text += rng.choice(("", " ", "，")) + rng.choice(OPTOUTS)
    # Some senders put the signature last.
    sig = re.match(r"【[^】]+】", text)
    if sig and rng.random() < 0.12:
        text = text[sig.end() :] + sig.group(0)
    return text, domains[0] if domains else "unknown"


def build(seed: int = SEED) -> list[dict[str, str]]:
    """Generate every row of the corpus, deterministically for a given seed."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for family in FAMILIES:
        want = ROWS_PER_FAMILY[family.label]
        made = attempts = 0
        while made < want and attempts < want * 40:
            attempts += 1
            text, domain = render(family, rng)
            key = mask_text(text)
            if key in seen:
                continue
            seen.add(key)
            made += 1
            rows.append(
                {
                    "text": text,
                    "label": family.label,
                    "declared": family.declared,
                    "family": family.fid,
                    "domain": domain,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Write the corpus JSONL and print its size per label and per domain."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=CORPUS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    rows = build(args.seed)
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    args.out.write_text(data, encoding="utf-8")
    digest = hashlib.sha256(data.encode("utf-8")).hexdigest()
    print(f"wrote {len(rows)} rows to {args.out} (sha256 {digest[:16]})")
    print("per label:", dict(sorted(Counter(r["label"] for r in rows).items())))
    print("per declared:", dict(sorted(Counter(r["declared"] for r in rows).items())))
    print("per domain:", dict(sorted(Counter(r["domain"] for r in rows).items())))
    print("families:", len({r["family"] for r in rows}))


if __name__ == "__main__":
    main()
