//! The ticket lifecycle of the service desk (004's flow): 受理 recorded → 交办 dispatched → 处理中
//! in progress → 待确认 awaiting confirmation → 结案 closed, with suspension (挂起), reopening,
//! cancellation, and the client's approval of service requests (SD8).
//!
//! [`transition`] is the single place that decides whether an action is allowed for a caller in a
//! state, what the next state is, and which SLA events ([`crate::sla::EventKind`]) it produces.
//! Storage applies its answer; it never changes a state on its own.

use crate::Msg;
use crate::authz::ContractRole;
use crate::sla::EventKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 故障
    Fault,
    /// 服务请求 (account changes and the like; may need the client's approval)
    ServiceRequest,
    /// 咨询
    Consultation,
    /// 问题 (links the incidents it explains)
    Problem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    AwaitingApproval,
    Recorded,
    Dispatched,
    InProgress,
    Suspended,
    AwaitingConfirmation,
    Closed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve,
    RejectRequest,
    /// Assign (or transfer) to a person or team.
    Dispatch,
    /// The assignee takes the ticket up: the response clock stops.
    Accept,
    /// The engineer is on site: the arrival clock stops.
    Arrive,
    Suspend,
    Resume,
    /// Solved; the reporter is asked to confirm.
    Solve,
    Confirm,
    /// The reporter says it is not solved.
    RejectSolution,
    /// No answer from the reporter within the contract's working days.
    AutoClose,
    Reopen,
    Cancel,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Fault, Kind::ServiceRequest, Kind::Consultation, Kind::Problem];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Fault => "fault",
            Kind::ServiceRequest => "service_request",
            Kind::Consultation => "consultation",
            Kind::Problem => "problem",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn label(self) -> Msg {
        match self {
            Kind::Fault => Msg::new("故障", "Fault"),
            Kind::ServiceRequest => Msg::new("服务请求", "Service request"),
            Kind::Consultation => Msg::new("咨询", "Consultation"),
            Kind::Problem => Msg::new("问题", "Problem"),
        }
    }
}

impl State {
    pub const ALL: [State; 8] = [
        State::AwaitingApproval,
        State::Recorded,
        State::Dispatched,
        State::InProgress,
        State::Suspended,
        State::AwaitingConfirmation,
        State::Closed,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::AwaitingApproval => "awaiting_approval",
            State::Recorded => "recorded",
            State::Dispatched => "dispatched",
            State::InProgress => "in_progress",
            State::Suspended => "suspended",
            State::AwaitingConfirmation => "awaiting_confirmation",
            State::Closed => "closed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn label(self) -> Msg {
        match self {
            State::AwaitingApproval => Msg::new("待审批", "Awaiting approval"),
            State::Recorded => Msg::new("已受理", "Recorded"),
            State::Dispatched => Msg::new("已交办", "Dispatched"),
            State::InProgress => Msg::new("处理中", "In progress"),
            State::Suspended => Msg::new("挂起", "Suspended"),
            State::AwaitingConfirmation => Msg::new("待确认", "Awaiting confirmation"),
            State::Closed => Msg::new("已结案", "Closed"),
            State::Cancelled => Msg::new("已取消", "Cancelled"),
        }
    }

    /// Open tickets are those still owed work or an answer.
    pub fn is_open(self) -> bool {
        !matches!(self, State::Closed | State::Cancelled)
    }
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::Approve,
        Action::RejectRequest,
        Action::Dispatch,
        Action::Accept,
        Action::Arrive,
        Action::Suspend,
        Action::Resume,
        Action::Solve,
        Action::Confirm,
        Action::RejectSolution,
        Action::AutoClose,
        Action::Reopen,
        Action::Cancel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::RejectRequest => "reject_request",
            Action::Dispatch => "dispatch",
            Action::Accept => "accept",
            Action::Arrive => "arrive",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Solve => "solve",
            Action::Confirm => "confirm",
            Action::RejectSolution => "reject_solution",
            Action::AutoClose => "auto_close",
            Action::Reopen => "reopen",
            Action::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn label(self) -> Msg {
        match self {
            Action::Approve => Msg::new("审批通过", "Approve"),
            Action::RejectRequest => Msg::new("驳回请求", "Reject request"),
            Action::Dispatch => Msg::new("交办", "Dispatch"),
            Action::Accept => Msg::new("接单", "Accept"),
            Action::Arrive => Msg::new("到场", "Arrived on site"),
            Action::Suspend => Msg::new("挂起", "Suspend"),
            Action::Resume => Msg::new("恢复处理", "Resume"),
            Action::Solve => Msg::new("已解决", "Solved"),
            Action::Confirm => Msg::new("确认解决", "Confirm"),
            Action::RejectSolution => Msg::new("未解决", "Not solved"),
            Action::AutoClose => Msg::new("自动结案", "Closed automatically"),
            Action::Reopen => Msg::new("重新打开", "Reopen"),
            Action::Cancel => Msg::new("取消", "Cancel"),
        }
    }
}

/// The SLA engine's event, as stored with a ticket's history ("created", "level:L1", …, or a
/// contract milestone such as "dispatched").
pub fn sla_event_name(kind: &EventKind) -> String {
    match kind {
        EventKind::Created => "created".into(),
        EventKind::LevelSet(l) => format!("level:{l}"),
        EventKind::Responded => "responded".into(),
        EventKind::Arrived => "arrived".into(),
        EventKind::Suspended => "suspended".into(),
        EventKind::Resumed => "resumed".into(),
        EventKind::Resolved => "resolved".into(),
        EventKind::Reopened => "reopened".into(),
        EventKind::Confirmed => "confirmed".into(),
        EventKind::Custom(c) => c.clone(),
    }
}

pub fn parse_sla_event(s: &str) -> EventKind {
    match s {
        "created" => EventKind::Created,
        "responded" => EventKind::Responded,
        "arrived" => EventKind::Arrived,
        "suspended" => EventKind::Suspended,
        "resumed" => EventKind::Resumed,
        "resolved" => EventKind::Resolved,
        "reopened" => EventKind::Reopened,
        "confirmed" => EventKind::Confirmed,
        other => match other.strip_prefix("level:") {
            Some(l) => EventKind::LevelSet(l.to_string()),
            None => EventKind::Custom(other.to_string()),
        },
    }
}

/// The contract milestone a dispatch produces (a dispatch clock stops on it, SD2).
pub const DISPATCHED: &str = "dispatched";
/// The milestone of a submitted major-incident summary report (SD7).
pub const SUMMARY_SUBMITTED: &str = "summary_submitted";

/// What is known about the caller and the ticket when an action is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub kind: Kind,
    /// The caller's role in the ticket's contract; `None` for the platform itself (auto-close).
    pub role: Option<ContractRole>,
    pub is_reporter: bool,
    pub is_assignee: bool,
    /// The contract requires a fault analysis record before a fault may be solved (SD7) …
    pub analysis_required: bool,
    /// … and it has been written.
    pub analysis_recorded: bool,
}

/// The next state and the SLA events the action produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub state: State,
    pub events: Vec<EventKind>,
}

fn refuse(zh: &'static str, en: &'static str) -> Result<Outcome, Msg> {
    Err(Msg::new(zh, en))
}

fn ok(state: State, events: Vec<EventKind>) -> Result<Outcome, Msg> {
    Ok(Outcome { state, events })
}

/// The first state of a new ticket: service requests that need approval wait for it.
pub fn initial_state(kind: Kind, needs_approval: bool) -> State {
    if kind == Kind::ServiceRequest && needs_approval { State::AwaitingApproval } else { State::Recorded }
}

/// Decides one action. Refusals carry a bilingual reason for the 4xx answer.
pub fn transition(state: State, action: Action, ctx: &Context) -> Result<Outcome, Msg> {
    use Action::*;
    use ContractRole::*;
    use State::*;
    let role = ctx.role;
    let vendor = matches!(role, Some(ServiceDesk | Engineer | BacklineExpert | ProjectManager));
    let desk_or_pm = matches!(role, Some(ServiceDesk | ProjectManager));
    let works_it = ctx.is_assignee || matches!(role, Some(ProjectManager));
    match (state, action) {
        (Closed | Cancelled, Reopen) if state == Cancelled => {
            refuse("已取消的工单不能重新打开", "A cancelled ticket cannot be reopened")
        }
        (Cancelled, _) => refuse("工单已取消", "The ticket is cancelled"),

        (AwaitingApproval, Approve | RejectRequest) => {
            if role != Some(ClientSupervisor) {
                return refuse(
                    "只有业主负责人可以审批服务请求",
                    "Only the client supervisor approves service requests",
                );
            }
            if ctx.is_reporter {
                return refuse("不能审批自己提交的请求", "You cannot approve your own request");
            }
            if action == Approve { ok(Recorded, vec![]) } else { ok(Cancelled, vec![]) }
        }
        (_, Approve | RejectRequest) => refuse("该工单无需审批或已审批", "This ticket is not waiting for approval"),
        (AwaitingApproval, Cancel) if ctx.is_reporter || desk_or_pm => ok(Cancelled, vec![]),
        (AwaitingApproval, _) => {
            refuse("服务请求尚待业主审批", "The service request is waiting for the client's approval")
        }

        (Recorded | Dispatched | InProgress, Dispatch) => {
            // The desk, the project manager and backline experts dispatch; an assignee may pass it on.
            let may_dispatch =
                matches!(role, Some(ServiceDesk | ProjectManager | BacklineExpert)) || (ctx.is_assignee && vendor);
            if !may_dispatch {
                return refuse("您的角色不能派单", "Your role cannot dispatch tickets");
            }
            // A transfer keeps the work going; a first dispatch waits for the assignee to accept.
            ok(if state == InProgress { InProgress } else { Dispatched }, vec![EventKind::Custom(DISPATCHED.into())])
        }
        (Dispatched, Accept) if ctx.is_assignee => ok(InProgress, vec![EventKind::Responded]),
        (_, Accept) => refuse("只有被派单人可以接单", "Only the assignee can take the ticket up"),
        (Dispatched | InProgress, Arrive) if works_it => ok(state, vec![EventKind::Arrived]),
        (InProgress, Suspend) if works_it => ok(Suspended, vec![EventKind::Suspended]),
        (Suspended, Resume) if works_it || desk_or_pm => ok(InProgress, vec![EventKind::Resumed]),
        (Recorded | Dispatched, Solve) if ctx.kind == Kind::Consultation && vendor => {
            ok(AwaitingConfirmation, vec![EventKind::Responded, EventKind::Resolved])
        }
        (InProgress, Solve) if works_it => {
            if ctx.kind == Kind::Fault && ctx.analysis_required && !ctx.analysis_recorded {
                return refuse(
                    "请先填写故障分析记录（原因、处理过程、影响、整改建议）",
                    "Write the fault analysis (cause, handling, impact, recommendations) first",
                );
            }
            ok(AwaitingConfirmation, vec![EventKind::Resolved])
        }
        (AwaitingConfirmation, Confirm | RejectSolution) => {
            if !ctx.is_reporter {
                return refuse("只有报告人可以确认解决结果", "Only the reporter can confirm the solution");
            }
            if action == Confirm {
                ok(Closed, vec![EventKind::Confirmed])
            } else {
                ok(InProgress, vec![EventKind::Reopened])
            }
        }
        (AwaitingConfirmation, AutoClose) if role.is_none() => ok(Closed, vec![EventKind::Confirmed]),
        (Closed, Reopen) if ctx.is_reporter || desk_or_pm => ok(InProgress, vec![EventKind::Reopened]),
        (Recorded | Dispatched | InProgress | Suspended, Cancel)
            if desk_or_pm || (ctx.is_reporter && state == Recorded) =>
        {
            ok(Cancelled, vec![])
        }
        (Closed, _) => refuse("工单已结案", "The ticket is closed"),
        _ => refuse("当前状态下不能执行此操作，或您的角色无权执行", "Not possible in this state, or not for your role"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx(kind: Kind, role: Option<ContractRole>, reporter: bool, assignee: bool) -> Context {
        Context {
            kind,
            role,
            is_reporter: reporter,
            is_assignee: assignee,
            analysis_required: true,
            analysis_recorded: false,
        }
    }

    #[test]
    fn a_fault_from_report_to_close() {
        use ContractRole::*;
        let desk = ctx(Kind::Fault, Some(ServiceDesk), false, false);
        let eng = ctx(Kind::Fault, Some(Engineer), false, true);
        let reporter = ctx(Kind::Fault, Some(ClientEndUser), true, false);
        let s = initial_state(Kind::Fault, false);
        let s = transition(s, Action::Dispatch, &desk).unwrap().state;
        assert_eq!(s, State::Dispatched);
        let o = transition(s, Action::Accept, &eng).unwrap();
        assert_eq!(o.events, vec![EventKind::Responded]);
        let s = o.state;
        assert_eq!(transition(s, Action::Arrive, &eng).unwrap().events, vec![EventKind::Arrived]);
        let s = transition(s, Action::Suspend, &eng).unwrap().state;
        let s = transition(s, Action::Resume, &eng).unwrap().state;
        // SD7: no closing without the analysis.
        let refused = transition(s, Action::Solve, &eng).unwrap_err();
        assert!(refused.zh.contains("故障分析"));
        let with_analysis = Context { analysis_recorded: true, ..eng };
        let s = transition(s, Action::Solve, &with_analysis).unwrap().state;
        assert_eq!(s, State::AwaitingConfirmation);
        // Someone else cannot confirm; the reporter can.
        assert!(transition(s, Action::Confirm, &desk).is_err());
        let o = transition(s, Action::Confirm, &reporter).unwrap();
        assert_eq!((o.state, o.events), (State::Closed, vec![EventKind::Confirmed]));
        assert_eq!(transition(State::Closed, Action::Reopen, &reporter).unwrap().events, vec![EventKind::Reopened]);
    }

    #[test]
    fn service_requests_need_the_clients_approval() {
        use ContractRole::*;
        let s = initial_state(Kind::ServiceRequest, true);
        assert_eq!(s, State::AwaitingApproval);
        let desk = ctx(Kind::ServiceRequest, Some(ServiceDesk), false, false);
        assert!(transition(s, Action::Dispatch, &desk).is_err(), "no work before approval");
        assert!(transition(s, Action::Approve, &desk).is_err(), "the desk does not approve");
        let own = ctx(Kind::ServiceRequest, Some(ClientSupervisor), true, false);
        assert!(transition(s, Action::Approve, &own).unwrap_err().en.contains("your own"));
        let supervisor = ctx(Kind::ServiceRequest, Some(ClientSupervisor), false, false);
        assert_eq!(transition(s, Action::Approve, &supervisor).unwrap().state, State::Recorded);
        assert_eq!(transition(s, Action::RejectRequest, &supervisor).unwrap().state, State::Cancelled);
    }

    #[test]
    fn consultations_can_be_answered_by_the_desk_directly() {
        let desk = ctx(Kind::Consultation, Some(ContractRole::ServiceDesk), false, false);
        let o = transition(State::Recorded, Action::Solve, &desk).unwrap();
        assert_eq!(o.state, State::AwaitingConfirmation);
        assert_eq!(o.events, vec![EventKind::Responded, EventKind::Resolved]);
    }

    #[test]
    fn auto_close_is_for_the_platform_only() {
        let desk = ctx(Kind::Fault, Some(ContractRole::ServiceDesk), false, false);
        assert!(transition(State::AwaitingConfirmation, Action::AutoClose, &desk).is_err());
        let platform = ctx(Kind::Fault, None, false, false);
        assert_eq!(transition(State::AwaitingConfirmation, Action::AutoClose, &platform).unwrap().state, State::Closed);
    }

    fn any_action() -> impl Strategy<Value = Action> {
        use Action::*;
        prop_oneof![
            Just(Approve),
            Just(RejectRequest),
            Just(Dispatch),
            Just(Accept),
            Just(Arrive),
            Just(Suspend),
            Just(Resume),
            Just(Solve),
            Just(Confirm),
            Just(RejectSolution),
            Just(AutoClose),
            Just(Reopen),
            Just(Cancel),
        ]
    }

    fn any_context() -> impl Strategy<Value = Context> {
        let kinds =
            prop_oneof![Just(Kind::Fault), Just(Kind::ServiceRequest), Just(Kind::Consultation), Just(Kind::Problem)];
        let roles = prop_oneof![Just(None), (0usize..6).prop_map(|i| Some(ContractRole::ALL[i]))];
        (kinds, roles, any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(kind, role, r, a, req, rec)| Context {
                kind,
                role,
                is_reporter: r,
                is_assignee: a,
                analysis_required: req,
                analysis_recorded: rec,
            },
        )
    }

    proptest! {
        /// Whatever anyone asks, in any order: a ticket is closed only from awaiting confirmation,
        /// a cancelled ticket stays cancelled, and the SLA events follow the state changes.
        #[test]
        fn lifecycle_invariants(needs_approval in any::<bool>(), steps in proptest::collection::vec((any_action(), any_context()), 0..40)) {
            let mut state = initial_state(Kind::ServiceRequest, needs_approval);
            for (action, ctx) in steps {
                match transition(state, action, &ctx) {
                    Ok(o) => {
                        if o.state == State::Closed && state != State::Closed {
                            prop_assert_eq!(state, State::AwaitingConfirmation);
                            prop_assert_eq!(&o.events, &vec![EventKind::Confirmed]);
                        }
                        prop_assert_ne!(state, State::Cancelled);
                        if o.events.contains(&EventKind::Resolved) {
                            prop_assert_eq!(o.state, State::AwaitingConfirmation);
                        }
                        if o.events.contains(&EventKind::Suspended) {
                            prop_assert_eq!(o.state, State::Suspended);
                        }
                        if action == Action::Approve {
                            prop_assert_eq!(ctx.role, Some(ContractRole::ClientSupervisor));
                            prop_assert!(!ctx.is_reporter);
                        }
                        state = o.state;
                    }
                    Err(m) => {
                        prop_assert!(!m.zh.is_empty() && !m.en.is_empty());
                    }
                }
            }
        }
    }
}
