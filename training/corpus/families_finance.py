"""Template families of the second corpus part: consumer finance, retail notices and hybrids.

Consumer-finance marketing worded as a service message (credit lines, loans, cash advances,
instalments, wealth and insurance products), retail promotions worded as account or order
notices, and hybrids (a real code or notice that also carries a promotion or a loan offer:
marketing), each with true notifications and codes from the same kinds of sender as controls
(transaction notices, repayment reminders, results of loans the user applied for, logistics).
"""

from __future__ import annotations

from training.corpus.slots import Family, mkt, ntf, ver

# Joins between the real part of a hybrid and its promotion: a sentence end or only a comma,
# so that a promotion is not always its own sentence.
_J = "[[。|，|；|，另外|。另：|！]]"

FINANCE: tuple[Family, ...] = (
    # ---- consumer-finance marketing worded as a service message (declared notification)
    mkt(
        "fin-as-notif-quota-reserved",
        "【{cfin}】[[账户提醒|额度通知|服务消息]]：[[根据您的信用情况|经系统综合评估|您的信用记录良好，]]"
        "[[已为您预留|您可申请|您已获得]]最高{quota}元[[借款|信用|可用]]额度，[[年化利率|利率]]低至{apr}%，"
        "[[随借随还|按日计息|最长{term}期]]，[[申请入口|点击查看|详情]]{url}",
        "【{cfin}】[[尊敬的用户|{name}]]，您的[[额度|借款资格]]已[[生成|审核完成]]，最高可借{quota}元，"
        "[[日息低至{daily}|年化{apr}%起]]，[[立即申请|去看看]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-fast-cash",
        "【{cfin}】[[到账提醒|资金提醒|放款通知]]：您的{quota}元[[备用金|周转金|应急额度|现金额度]]已准备好，"
        "[[最快{mins}分钟到账|秒批秒到|审核快至{n}0秒]]，[[{hours}小时内有效|过期自动失效|今日有效]]，{url}",
        "【{cfin}】[[温馨提示|系统消息]]：您有一笔{quota}元[[借款|现金]]待领取，[[无需抵押|不查征信|纯线上]]，"
        "[[最快{mins}分钟放款|当天到账]]，[[领取|提现]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-raise",
        "【{cfin}】[[提额成功|额度调整提醒|额度升级通知]]：[[恭喜，|]]您的可用额度已[[提升至|调整为]]{quota}元，"
        "[[本周借款|现在提现|{hours}小时内借款]][[享{pct}利息|首期免息|送{amt_s}元还款券]]，[[马上使用|立即借款]]{url}",
        "【{bank2}】[[服务提醒|尊敬的持卡人]]：您的信用卡可[[申请|享]][[临时提额|永久提额]]至{big}元，"
        "[[限时{n}天|本月有效]]，[[回复{kw}办理|登录APP一键提额]]",
        declared="notification",
        optout=0.1,
        sector="finance",
    ),
    mkt(
        "fin-as-notif-coupon",
        "【{cfin}】您的[[免息券|利息折扣券|还款立减券|{n}天免息特权]]已到账，借款时[[自动抵扣|即可使用]]，"
        "[[{date}到期|今日截止|仅剩{n}天]]，[[去借款|立即使用]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-reborrow",
        "【{cfin}】[[还款完成提醒|账户通知]]：感谢您按时还款，您的额度已恢复[[并提升|]]，可再次借款最高{quota}元"
        "[[，利率{pct}|，低息秒批|]]，[[再借一笔|立即借款]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-bank-preloan",
        "【{bank2}】尊敬的客户，您[[已进入我行|获得]][[预授信|白名单|优质客户]][[名单|资格]]，"
        "[[消费贷|快贷|信用贷|经营贷]]最高{big}元，年化{apr}%起，[[线上申请|手机银行一键申请|最快{mins}分钟放款]]",
        "【{bank}】[[温馨提示|服务通知]]：您的[[代发工资|房贷|存款]]客户专享[[贷款|借款]]额度已生成，"
        "最高{big}元，[[利率优惠|年化{apr}%起]]，[[详询{hotline}|登录手机银行申请]]",
        declared="notification",
        optout=0.1,
        sector="finance",
    ),
    mkt(
        "fin-as-notif-cash-instalment",
        "【{bank2}】[[尊敬的客户|您好]]，您的信用卡[[已满足|符合]][[现金分期|账单分期|大额分期]]办理条件，"
        "可分期金额{big}元，[[手续费{pct}|费率低至月0.{n}%|最长{term}期]]，[[当日到账|回复{kw}办理|登录APP办理]]",
        declared="notification",
        optout=0.1,
        sector="finance",
    ),
    mkt(
        "fin-as-notif-wealth-trial",
        "【{wealth}】[[资产提醒|账户动态|收益提醒]]：您的账户已[[开通|到账]]{points2}元[[体验金|理财体验金]]，"
        "可体验{n}天收益，[[收益可提现|收益归您]]，[[立即领取|去体验]]{url}",
        "【{wealth}】[[新手权益提醒|加息券提醒]]：您的{rate}%加息[[权益|券]]即将到期，购买{n}0天产品即可使用，"
        "[[{amt}元起购|1元起投]]，{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-wealth-idle",
        "【{wealth}】[[资金提醒|温馨提示]]：您的[[余额|闲置资金|活期资金]]可[[一键转入|升级为]][[稳健理财|货币基金|"
        "月月盈计划]]，[[七日年化|预期年化|历史年化]]{rate}%，[[随时赎回|当日计息]]，[[立即转入|了解]]{url}",
        "【{bank}】[[理财资讯|服务提醒]]：本行新发[[{n}0天|一年期]]理财，业绩比较基准{rate}%，{amt}元起购，"
        "[[额度有限|本周截止认购]]，[[详询{hotline}|欢迎到网点咨询]]",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-fund-fee",
        "【{wealth}】尊敬的投资者，您[[关注的|持有的同类]][[稳健|指数|债券]]基金近一年[[收益|涨幅]]{rate}%，"
        "[[本周申购费1折|限时费率{pct}|定投首期免费]]，[[点击了解|立即申购]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-ins-gap",
        "【{ins2}】[[保障提醒|家庭保障报告]]：您的家庭[[保障缺口|医疗保障]]较大，[[百万医疗险|重疾险|意外险]]"
        "[[每月仅需{amt_s}元|首月0元|低至{amt_s}元/年]]，[[立即测算|马上投保|了解方案]]{url}",
        "【{ins2}】[[服务通知|温馨提示]]：您已获得[[投保资格|免费保障]]，[[领取后可升级|加购]][[保额|住院险|"
        "重疾保障]][[仅需{amt_s}元|享{pct}]]，[[今日截止|名额有限]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-car-ins-offer",
        "【{ins2}】[[车险到期提醒|续保提醒]]：您的爱车车险即将到期，[[现在续保享{pct}|续保立减{amt_s}元]]"
        "[[并送{gift}|再送加油卡|，推荐好友各得{amt_s}元]]，[[点击报价|立即续保]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-card-invite",
        "【{bank2}】[[尊敬的客户|您好]]，您已[[获邀|获得资格]]开通我行[[联名|白金|车主]]信用卡，"
        "[[首刷送{amt_s}元立减金|年费全免|新户礼{gift}]]，[[申请|一键办卡]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-shop-instalment",
        "【{cfin}】[[订单服务通知|额度通知]]：您的分期[[购物额度|权益]]已[[提升至{quota}元|升级]]，"
        "[[手机家电|指定商品]]最长{term}期免息，[[马上选购|去使用]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-ver-verified-quota",
        "【{cfin}】[[身份核验成功|认证通过|验证已完成]]！您的专属额度{quota}元已生成，[[立即提现|最快{mins}分钟到账|"
        "秒批秒到]]{url}",
        "【{wealth}】[[风险测评已完成|认证成功]]，您可认购[[年化|预期年化]]{rate}%的[[精选|新客]]产品，"
        "{amt}元起投，[[限时{n}天|额度有限]]{url}",
        declared="verification",
        optout=0.1,
    ),
    # ---- retail promotions worded as account or order notices (declared notification)
    mkt(
        "ret-as-notif-coupon-waiting",
        "【{mall}】[[账户通知|系统提醒|券包提醒]]：您的账户有[[一张|{n}张]][[满{m1}减{m2}|{amt_s}元无门槛]]"
        "[[优惠券|券]]待领取，[[今晚24点|{date}]]过期，[[领取|去使用]]{url}",
        "【{fresh}】[[会员服务提醒|账户消息]]：您有{n}张[[红包|代金券]]已放入账户，合计{amt_s}元，"
        "[[仅限今日|本周内]]使用",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "ret-as-notif-cart-drop",
        "【{mall}】[[您购物车中的|您收藏的|您浏览过的]]{product}[[已降价|价格变动]]，[[比加购时便宜{amt_s}元|"
        "现价{amt}元|直降{amt_s}元]]，[[库存紧张|仅剩{n}小时]]，[[去结算|立即购买]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "ret-as-notif-unpaid-push",
        "【{mall}】[[订单提醒|待付款提醒]]：您有一笔未支付的订单，[[现在支付再减{amt_s}元|付款即送{gift}|"
        "限时加赠优惠券]]，[[商品即将售罄|优惠仅剩{n}小时]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "ret-as-notif-restock",
        "【{fresh}】[[到货通知|补货提醒]]：您常买的{product}[[补货了|到新货了]]，[[今日特价{amt_s}元|第二件半价|"
        "买二送一]]，[[明天送达|门店有售]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "ret-as-notif-vip-downgrade",
        "【{mall}】[[会员通知|等级提醒]]：您的会员等级将于[[月底|{date}]][[降级|到期]]，[[消费满{m1}元即可保级|"
        "续费首月{amt_s}元]]，[[并获赠{gift}|免运费不限次]]",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "ret-as-notif-cashback-waiting",
        "【{mall}】[[账户资产提醒|返现通知]]：您有{amt_s}元[[返现|购物金]]待领取，下单时[[抵扣|可用]]，"
        "[[今日23:59失效|{hours}小时后失效]]",
        "【{fresh}】[[余额提醒|储值卡提醒]]：[[充{m1}送{m2}|充值{m1}元得{amt_s}元]]活动[[进行中|仅剩{n}天]]，"
        "[[门店|小程序]]均可参与",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "ret-as-notif-store-event",
        "【{fresh}】[[门店通知|会员日提醒]]：本周[[六|日|三]]会员专享，{product}[[仅售{amt_s}元|买一送一|"
        "{pct}]]，[[前{n}0名送{gift}|凭短信领{gift}]]",
        declared="notification",
        optout=0.1,
    ),
    # ---- hybrids: a real code + a promotion or a loan offer (declared verification)
    mkt(
        "hyb-code-loan",
        "【{cfin}】[[验证码|您的登录验证码为|校验码：]]{code}[[，{min}分钟内有效|（{min}分钟有效）|]]"
        "[[，请勿泄露|]]" + _J + "[[您有|另有|当前可借]]{quota}元[[额度待领取|额度|借款额度]]，"
        "[[最快{mins}分钟到账|秒批秒到|首期免息]][[{url}|]]",
        declared="verification",
        optout=0.1,
    ),
    mkt(
        "hyb-code-bank-offer",
        "【{bank2}】[[动态密码|验证码]]{code}，您正在[[登录手机银行|进行转账|办理业务]]，请勿泄露"
        + _J
        + "[[您已获得信用卡提额资格，回复{kw}办理|快贷最快{mins}分钟到账，年化{apr}%起|"
        "闲钱理财年化{rate}%，手机银行可购|办卡首刷送{amt_s}元立减金]]",
        declared="verification",
        optout=0.1,
        sector="finance",
    ),
    mkt(
        "hyb-code-wealth-ins",
        "【{wealth}】您的验证码是{code}[[，用于注册|，用于登录|]]"
        + _J
        + "[[新手专享年化{rate}%理财，"
        "{amt}元起投|体验金{points2}元已到账，收益归您]][[{url}|]]",
        "【{ins2}】您正在[[签署投保单|办理保全]]，验证码{code}"
        + _J
        + "[[加购意外险每月仅需{amt_s}元|"
        "升级保额享{pct}|为家人投保享9折]][[{url}|]]",
        declared="verification",
        optout=0.1,
    ),
    mkt(
        "hyb-code-retail",
        "【{mall}】[[验证码|短信验证码|登录验证码]]{code}[[，{min}分钟内有效|]][[，请勿泄露|]]"
        + _J
        + "[[新人首单立减{amt_s}元|今日爆款{pct}|年货节每满{m1}减{m2}|注册送{amt_s}元券包]]"
        "[[，下单戳{url}|{url}|]]",
        "【{fresh}】[[会员绑定|登录]]验证码{code}[[，{min}分钟内有效|]]"
        + _J
        + "[[本周会员日{product}{pct}|首单满{m1}减{m2}|开通月卡{amt_s}元每单再减]]",
        declared="verification",
        optout=0.1,
    ),
    # ---- hybrids: a real notice + a promotion or a loan offer (declared notification)
    mkt(
        "hyb-txn-wealth",
        "【{bank2}】您尾号{tail}的[[储蓄卡|借记卡|账户]]{date}{time}[[转入|支出|消费]]人民币{amt}元，"
        "余额{amt2}元" + _J + "[[闲钱理财选稳利，年化{rate}%|代发客户专享消费贷最高{big}元|"
        "办信用卡首刷送{gift}|大额存单利率上浮，{amt}元起存]]",
        declared="notification",
        optout=0.1,
        sector="finance",
    ),
    mkt(
        "hyb-bill-offer",
        "【{bank2}】您尾号{tail}的信用卡本期账单{amt}元，到期还款日{date}"
        + _J
        + "[[本期账单可分{term}期，手续费{pct}，回复{kw}办理|您可申请现金分期，当日到账|"
        "还款后可享临时提额至{big}元]]",
        "【{cfin}】[[您的账单已出|还款提醒]]：本期应还{amt}元，[[还款日|最后还款日]]{date}"
        + _J
        + "[[按时还款后可再借，额度已提升至{quota}元|"
        "提前还款可享提额|还款后再借享{n}天免息]][[{url}|]]",
        declared="notification",
        optout=0.1,
        sector="finance",
    ),
    mkt(
        "hyb-loan-result-upsell",
        "【{cfin}】您申请的借款{amt}元已[[放款|发放]]至尾号{tail}的银行卡"
        + _J
        + "[[邀请好友借款成功可得{amt_s}元奖励|再借一笔享利率{pct}|"
        "加购借款保障险仅需{amt_s}元]][[{url}|]]",
        "【{ins2}】您的保单{order}已[[承保|生效]]，保费{amt}元"
        + _J
        + "[[为家人加保重疾险享{pct}|推荐好友投保各得{amt_s}元加油卡|"
        "升级百万医疗仅需{amt_s}元]][[{url}|]]",
        declared="notification",
        optout=0.1,
        sector="finance",
    ),
    mkt(
        "hyb-order-promo",
        "【{mall}】您的订单{order}已[[发货|出库|签收]][[，预计{date}送达|]]"
        + _J
        + "[[店铺周年庆满{m1}减{m2}|同款第二件半价|好评返{amt_s}元红包|新品{pct}限时抢]]"
        "[[，再逛逛{url}|{url}|]]",
        "【{mall}】[[退款通知|退款成功]]：{amt}元已原路退回"
        + _J
        + "[[送您{amt_s}元无门槛券，全场爆款{pct}|今晚下单满{m1}减{m2}|欢迎回来，新人价{pct}]]",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "hyb-receipt-promo",
        "【{fresh}】您于{date}消费{amt}元，获积分{points}"
        + _J
        + "[[本周末全场满{m1}减{m2}|下周三会员日{pct}|凭此短信再领{gift}|充{m1}送{m2}活动进行中]]",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "hyb-parcel-promo",
        "【{courier2}】您的快件已到{station}，取件码{pickup}"
        + _J
        + "[[寄件新客首单{amt_s}元寄全国|{event}寄件{pct}|邀请好友各得{amt_s}元寄件券]][[{url}|]]",
        "【{courier2}】您的包裹正在派送中，快递员电话{phone}"
        + _J
        + "[[上门取件首单立减{amt_s}元|寄快递{pct}|同城{n}元寄]][[{url}|]]",
        declared="notification",
        optout=0.1,
    ),
    # ---- second wording of the same concepts (each concept in at least two families, so
    # that family-level cross-validation sees it when one family is held out)
    mkt(
        "fin-as-notif-reborrow-old",
        "【{fin}】[[还款成功|感谢您的按时还款]]！[[您的信用额度已恢复至{quota}元|账户额度已恢复]]，"
        "[[再次借款享利息{pct}|再借可领{amt_s}元红包|现在借款{mins}分钟到账]][[，随时可借|]]",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-bank-starloan",
        "【{bank}】[[尊敬的客户|您好]]，您已被评为[[星级客户|优质代发客户|优质存款客户]]，[[专属信用贷款|线上快贷]]"
        "额度{big}元已开通，[[随借随还|按日计息]]，[[立即支用|去看看]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "fin-as-notif-cashout-open",
        "【{fin}】[[提现通道已开启|您的提现权限已开通|您的取现资格已恢复]]，[[今日|限时|{hours}小时内]]提现"
        "[[手续费全免|免息{n}天|利息打{pct}]]，[[速领|点击]]{url}",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "hyb-repay-plus-loan",
        "【{fin}】您的借款本期应还{amt}元，还款日{date}"
        + _J
        + "[[需要资金周转？最高可借{quota}元|还款后额度秒恢复，可再借{quota}元|"
        "本月借款享利率{pct}]][[{url}|]]",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "hyb-bank-repaid-offer",
        "【{bank}】您的[[贷款|房贷|信用卡]]本月还款{amt}元已扣款成功"
        + _J
        + "[[装修可申请消费贷，年化{apr}%起|闲钱可购理财，年化{rate}%|"
        "可申请账单分期{term}期，费率{pct}]]",
        declared="notification",
        optout=0.1,
        sector="finance",
    ),
    mkt(
        "hyb-rider-promo",
        "【{food}】骑手[[已接单|已取餐]]，预计{time}送达"
        + _J
        + "[[下单满{n}次再送{amt_s}元红包|明天下单立减{amt_s}元|开通会员每单减{amt_s}元]]",
        declared="notification",
        optout=0.1,
    ),
    mkt(
        "hyb-ticket-upsell",
        "【{rail}】[[订票成功|出票成功]]：{date}{train}次{city}-{city2}，{seat}"
        + _J
        + "[[加购接站服务立减{amt_s}元|{city2}酒店{pct}起，限时抢|"
        "购买出行意外险仅需{amt_s}元]][[{url}|]]",
        "【{air}】您的{date}{flight}航班已出票"
        + _J
        + "[[升舱仅需{amt_s}元|加购行李额{pct}|酒店机票套餐立减{amt_s}元]][[{url}|]]",
        declared="notification",
        optout=0.1,
        sector="other",
    ),
    mkt(
        "hyb-code-english",
        "【{mall}】[[Your verification code is|Code:]] {code}[[.|"
        ",]] [[Get {n}0% off your first order|"
        "Flash sale today: up to 70% off|New users get a CNY {amt_s} coupon]] {url}",
        declared="verification",
        optout=0.1,
    ),
    # ---- true notifications from the same kinds of sender (controls)
    ntf(
        "ntf-cfin-repay-reminder",
        "【{cfin}】[[还款提醒|温馨提示]]：您的借款本期应还{amt}元，[[将于{date}自动扣款|还款日{date}]]，"
        "请确保尾号{tail}的银行卡余额充足[[。|，以免逾期。]]",
        "【{cfin}】您的账单已出：本期应还{amt}元，最后还款日{date}，[[可在APP主动还款|到期将自动扣款]]。",
    ),
    ntf(
        "ntf-cfin-overdue",
        "【{cfin}】您的借款已逾期{n}天，逾期金额{amt}元，请尽快还款，[[以免影响个人征信|逾期将产生罚息]]。",
        "【{cfin}】尾号{tail}银行卡扣款失败，本期应还{amt}元未还，请于{date}前补足余额。",
    ),
    ntf(
        "ntf-cfin-result",
        "【{cfin}】您申请的[[借款|额度评估]][[审核结果|审批结果]]：[[已通过|审批通过]]，[[借款|额度]]{amt}元"
        "[[将于{n}小时内到账|已放款至尾号{tail}的银行卡|有效期{term}个月]]，首期还款日{date}。",
        "【{cfin}】很遗憾，您的[[借款|额度]]申请未通过综合评估，[[{n}0天后可再次申请|感谢您的理解]]。",
        "【{cfin}】您的借款申请资料已提交，正在审核中，结果将在[[1个工作日|{hours}小时]]内以短信通知您。",
    ),
    ntf(
        "ntf-cfin-settled",
        "【{cfin}】[[还款成功|扣款成功]]：您已还清本期{amt}元，剩余待还本金{amt2}元，下期还款日{date}。",
        "【{cfin}】您的借款已全部结清，结清证明可在APP中下载[[，感谢您按时还款|]]。",
        "【{cfin}】您的借款合同已签署完成，合同编号{order}，电子合同可在APP中查看。",
    ),
    ntf(
        "ntf-bank2-txn",
        "【{bank2}】您尾号{tail}的[[借记卡|储蓄卡]]{date}{time}[[支出|转入|消费|代扣水费]]人民币{amt}元，余额{amt2}元。",
        "【{bank2}】您尾号{tail}的信用卡{date}消费人民币{amt}元，可用额度{amt2}元。",
        "【{bank2}】工资代发到账通知：您尾号{tail}账户入账{amt}元，余额{amt2}元。",
    ),
    ntf(
        "ntf-bank2-bill-loan",
        "【{bank2}】您尾号{tail}的信用卡本期账单{amt}元，最低还款{amt_s}元，到期还款日{date}。",
        "【{bank2}】您的个人住房贷款本月还款额{amt}元将于{date}扣款，请确保尾号{tail}账户余额充足。",
        "【{bank2}】您尾号{tail}信用卡的临时额度{amt}元将于{date}到期，到期后恢复为固定额度。",
    ),
    ntf(
        "ntf-bank2-card-result",
        "【{bank2}】您申请的信用卡已审批通过，额度{big}元，卡片将在{n}个工作日内寄出，请留意查收。",
        "【{bank2}】您尾号{tail}信用卡的固定额度已按您的申请调整为{big}元，即日生效。",
        "【{bank2}】您申请的账单分期已办理成功，分{term}期，每期本金{amt_s}元，每期手续费{amt_s}元。",
    ),
    ntf(
        "ntf-wealth-matured",
        "【{wealth}】您持有的[[{n}0天稳健|定期]]产品已到期，本金{amt}元及收益{amt_s}元已返还至余额。",
        "【{wealth}】您于{date}申购的基金确认份额{points}份，确认金额{amt}元。",
        "【{wealth}】您于{date}赎回的{amt}元已到账，请查收。",
    ),
    ntf(
        "ntf-ins2-policy",
        "【{ins2}】您的保单{order}已生效，保障期限至{date}，电子保单已发送至您的邮箱。",
        "【{ins2}】您的理赔申请已受理，案件号{order}，预计{n}个工作日内出结果。",
        "【{ins2}】您的车险将于{date}到期，请及时续保以免脱保，续保请联系专属客服{hotline}。",
    ),
    ntf(
        "ntf-mall-order",
        "【{mall}】您的订单{order}已发货，快递单号{order2}，预计{date}送达。",
        "【{mall}】您的订单{order}尚未支付，将在{min}分钟后自动取消，如已支付请忽略。",
        "【{mall}】您的退款{amt}元已原路退回，订单使用的{amt_s}元优惠券已退回券包。",
    ),
    ntf(
        "ntf-fresh-receipt",
        "【{fresh}】您于{date}消费{amt}元，获积分{points}，当前积分{points2}。",
        "【{fresh}】您预订的{product}已到店，请于{date}前到{store}取货。",
        "【{fresh}】您的会员卡余额变动：消费{amt_s}元，余额{amt}元。",
    ),
    ntf(
        "ntf-courier2-parcel",
        "【{courier2}】您的快件已到{station}，取件码{pickup}，请于{date}前取件。",
        "【{courier2}】您的包裹{order2}正在派送中，快递员{courier}电话{phone}，请保持电话畅通。",
        "【{courier2}】您寄出的快件已揽收，运单号{order2}，可在{url}查看物流。",
    ),
    ntf(
        "ntf-cfin-bill-due",
        "【{cfin}】[[尊敬的客户|您好]]，您的[[借款|分期]]第{n}期账单{amt}元将于{date}到期，"
        "[[可通过APP还款|系统将自动扣款]]，如已还款请忽略。",
        "【{fin}】您的本期还款{amt}元已从尾号{tail}银行卡自动扣款成功[[，下期还款日{date}|，感谢您的信任]]。",
    ),
    ntf(
        "ntf-bank-loan-due",
        "【{bank}】[[贷款还款提醒|温馨提示]]：您的[[个人消费贷款|经营贷款|信用贷款]]本期应还本息{amt}元，"
        "扣款日{date}，请于扣款日前存入足额资金。",
        "【{bank2}】您尾号{tail}信用卡已逾期{n}天，欠款{amt}元，请尽快还款，以免影响信用记录。",
    ),
    ntf(
        "ntf-fin-approval-result",
        "【{fin}】[[审批结果通知|借款进度通知]]：您{date}提交的借款申请已审批通过，借款金额{amt}元，"
        "[[请在APP确认签约后放款|款项将发放至尾号{tail}账户]]。",
        "【{bank}】您申请的[[消费贷款|装修贷款]]{amt}元已审批通过并发放至尾号{tail}账户，贷款期限{term}个月。",
    ),
    ntf(
        "ntf-wealth-income",
        "【{bank}】您购买的理财产品{order}本期收益{amt_s}元已到账，[[本金继续持有|产品到期日{date}]]。",
        "【{fin}】根据您的申请，您的借款额度已[[冻结|关闭]]，如需恢复请联系客服{hotline}。",
    ),
    # ---- true codes from the same kinds of sender (controls)
    ver(
        "ver-cfin-ops",
        "【{cfin}】您正在[[申请提额|申请借款|签署借款合同|更换绑定银行卡|提前还款]]，验证码{code}，"
        "[[{min}分钟内有效|请勿泄露]]。",
        "【{cfin}】[[借款|提现|还款]]确认码{code}，金额{amt}元，[[客服不会索要验证码|请勿告诉任何人]]。",
    ),
    ver(
        "ver-bank2-ops",
        "【{bank2}】您正在[[申请信用卡分期|办理转账|绑定新设备|申请电子账户]]，验证码{code}，"
        "[[请勿泄露|{min}分钟内有效]]。",
    ),
    ver(
        "ver-wealth-ops",
        "【{wealth}】您正在[[购买理财产品|赎回基金|转出资金]]，金额{amt}元，验证码{code}，请勿泄露。",
        "【{ins2}】您正在[[签署投保单|申请理赔|办理退保]]，验证码{code}，{min}分钟内有效。",
    ),
    ver(
        "ver-mall-ops",
        "【{mall}】[[验证码|登录验证码]]{code}，{min}分钟内有效，请勿泄露。",
        "【{fresh}】会员绑定验证码{code}，{min}分钟内有效。",
        "【{courier2}】您的签收码为{code}，请在快递员派送时出示。",
    ),
)
