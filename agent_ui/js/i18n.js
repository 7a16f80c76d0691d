// UI texts in Chinese (default) and English. t(key, vars) renders one.
const TEXTS = {
  zh: {
    title: "坐席工作台", supervisorTitle: "班长监控台", username: "用户名", password: "密码",
    login: "登录", logout: "退出", available: "示闲", pause: "示忙", pauseReason: "示忙原因",
    reasons: { break: "休息", lunch: "午餐", training: "培训", meeting: "会议" },
    state: "状态", states: { logged_out: "未登录", available: "空闲", reserved: "振铃中",
      on_call: "通话中", wrap_up: "话后处理", paused: "示忙" },
    wrapUp: "话后处理", incoming: "来电", connected: "通话中", ended: "已结束", ringing: "振铃中",
    answer: "接听", hangup: "挂机", hold: "保持", resume: "恢复", mute: "静音", unmute: "取消静音",
    pauseRecording: "暂停录音", resumeRecording: "继续录音",
    transfer: "转接", toAgent: "坐席", toQueue: "队列", toNumber: "号码", blind: "直接转",
    attended: "咨询转", target: "目标", procedures: "规范流程",
    completeTransfer: "完成转接", cancelTransfer: "取消转接", consulting: "咨询中",
    transferring: "转接中", held: "保持中",
    proc: { silent: "无声电话", quiet: "声音太小", noisy_line: "杂音太大", dialect: "方言",
      volume_up: "调高音量" },
    customer: "客户", unknownCaller: "未知来电", tier: "级别", number: "号码", queue: "队列",
    menuPath: "菜单路径", waited: "等待", seconds: "秒", lastCalls: "最近来电", notes: "备注",
    script: "建议话术", pending: "正在查询外部CRM…", crmError: "外部CRM不可用",
    disposition: "话后小结", outcome: "结果", note: "说明", save: "保存",
    outcomes: { resolved: "已解决", follow_up: "需跟进", complaint: "投诉", escalated: "已升级",
      no_action: "无需处理", other: "其他" },
    search: "客户查询", searchPlaceholder: "姓名、公司或号码", noResults: "无结果",
    kb: "知识库", kbPlaceholder: "输入问题关键词,如“退款”", kbSearch: "搜索",
    kbNone: "知识库中没有答案。", kbAsk: "提交值班经理", kbAsked: "已提交值班经理(编号 {id})",
    softphone: "软电话", softphoneOff: "未启用(使用座机)", softphoneOn: "已注册",
    softphoneSetup: "设置", wssUrl: "WSS地址", sipUri: "SIP URI", sipPassword: "SIP密码",
    enable: "启用", disable: "停用", connection: "连接", online: "在线", offline: "离线",
    queues: "队列", agents: "坐席", waiting: "排队", calls: "通话", agent: "坐席",
    loginFailed: "用户名或密码错误", language: "English",
    callbacks: "回拨请求", voicemails: "语音留言", refresh: "刷新", when: "时间", callerLang: "语言",
    mailbox: "信箱", duration: "时长", noCallbacks: "暂无回拨请求", noVoicemails: "暂无语音留言",
    markDone: "已回拨", doneAt: "已处理 {time}", play: "播放", loadingAudio: "正在加载留言…",
    playing: "正在播放:{number}", updatedAt: "更新于 {time}", langs: { zh: "中文", en: "英语" },
    wallboard: "今日指标", longestWait: "最长等待", offered: "呼入", answered: "接通",
    abandoned: "放弃(+短)", serviceLevel: "服务水平", abandonRate: "放弃率",
    callsHandled: "通话数", talk: "通话时长", wrapUp: "整理", paused: "小休", occupancy: "占用率",
  },
  en: {
    title: "Agent desk", supervisorTitle: "Supervisor", username: "Username", password: "Password",
    login: "Log in", logout: "Log out", available: "Available", pause: "Pause",
    pauseReason: "Pause reason",
    reasons: { break: "Break", lunch: "Lunch", training: "Training", meeting: "Meeting" },
    state: "State", states: { logged_out: "Logged out", available: "Available",
      reserved: "Ringing", on_call: "On call", wrap_up: "Wrap-up", paused: "Paused" },
    wrapUp: "Wrap-up", incoming: "Incoming call", connected: "Connected", ended: "Ended",
    ringing: "Ringing", answer: "Answer", hangup: "Hang up", hold: "Hold", resume: "Resume",
    pauseRecording: "Pause recording", resumeRecording: "Resume recording",
    mute: "Mute", unmute: "Unmute", transfer: "Transfer", toAgent: "Agent", toQueue: "Queue",
    toNumber: "Number", blind: "Blind", attended: "Attended", target: "Target",
    completeTransfer: "Complete transfer", cancelTransfer: "Cancel transfer",
    consulting: "Consulting", transferring: "Transferring", held: "On hold",
    procedures: "Procedures",
    proc: { silent: "Silent call", quiet: "Too quiet", noisy_line: "Noisy line",
      dialect: "Dialect", volume_up: "Volume up" },
    customer: "Customer", unknownCaller: "Unknown caller", tier: "Tier", number: "Number",
    queue: "Queue", menuPath: "Menu path", waited: "Waited", seconds: "s",
    lastCalls: "Last calls", notes: "Notes", script: "Suggested line",
    pending: "Asking the external CRM…", crmError: "External CRM unavailable",
    disposition: "Disposition", outcome: "Outcome", note: "Note", save: "Save",
    outcomes: { resolved: "Resolved", follow_up: "Follow-up", complaint: "Complaint",
      escalated: "Escalated", no_action: "No action", other: "Other" },
    search: "Customer search", searchPlaceholder: "Name, company or number",
    kb: "Knowledge base", kbPlaceholder: "Keywords, e.g. refund", kbSearch: "Search",
    kbNone: "No answer in the knowledge base.", kbAsk: "Ask the duty manager",
    kbAsked: "Sent to the duty manager (no. {id})",
    noResults: "No results", softphone: "Softphone", softphoneOff: "Off (desk phone)",
    softphoneOn: "Registered", softphoneSetup: "Set up", wssUrl: "WSS URL", sipUri: "SIP URI",
    sipPassword: "SIP password", enable: "Enable", disable: "Disable", connection: "Connection",
    online: "online", offline: "offline", queues: "Queues", agents: "Agents",
    waiting: "Waiting", calls: "Calls", agent: "Agent",
    loginFailed: "Wrong username or password", language: "中文",
    callbacks: "Call-back requests", voicemails: "Voicemails", refresh: "Refresh", when: "When",
    callerLang: "Language", mailbox: "Mailbox", duration: "Duration",
    noCallbacks: "No call-back requests", noVoicemails: "No voicemails", markDone: "Done",
    doneAt: "Done {time}", play: "Play", loadingAudio: "Loading the message…",
    playing: "Playing: {number}", updatedAt: "Updated {time}",
    langs: { zh: "Chinese", en: "English" },
    wallboard: "Today", longestWait: "Longest wait", offered: "Offered", answered: "Answered",
    abandoned: "Abandoned (+short)", serviceLevel: "Service level", abandonRate: "Abandoned %",
    callsHandled: "Calls", talk: "Talk", wrapUp: "Wrap-up", paused: "Paused",
    occupancy: "Occupancy",
  },
};

let current = localStorage.getItem("desk.lang") || (navigator.language.startsWith("zh") ? "zh" : "zh");

export function lang() { return current; }

export function setLang(value) {
  current = TEXTS[value] ? value : "zh";
  localStorage.setItem("desk.lang", current);
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
}

export function t(path, vars = {}) {
  let node = TEXTS[current];
  for (const part of path.split(".")) node = node?.[part];
  if (typeof node !== "string") return path;
  return node.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
}

// Fill every element that has data-i18n="key" (text) or data-i18n-placeholder="key".
export function translatePage(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}
