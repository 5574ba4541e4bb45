//! Who is calling and what they may see and do.
//!
//! A caller is a person signed in with their own account, or a machine with an API token; both
//! hold **grants**: a role at a scope (the program; a PIN and all its suffix locations; one
//! location). What a caller sees is the union of its grants' scopes (docs/domain.md: "a clinic
//! user never sees another PIN's data"); what it may do is its roles' (README, "Accounts and
//! sign-in", the roles table). The scope check lives here so every route asks the same question
//! the same way.

pub mod audit;
pub mod contacts;
pub mod credentials;
pub mod links;
pub mod password;
pub mod people;
pub mod scope;
pub mod second_factor;
pub mod sessions;
pub mod status;
pub mod tokens;

pub use scope::Scope;

pub use contacts::normalise_email;

/// A role, named as the CLI and the API write it. One vocabulary for accounts and tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    StateAdmin,
    StateCoordinator,
    StateViewer,
    ProviderOfRecord,
    VfcCoordinator,
    BackupCoordinator,
    ClinicStaff,
    /// A token made before accounts existed: a `vfc-coordinator` without accounts.
    Clinic,
}

/// Where a role may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Program,
    PinOrLocation,
    Location,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::StateAdmin,
        Role::StateCoordinator,
        Role::StateViewer,
        Role::ProviderOfRecord,
        Role::VfcCoordinator,
        Role::BackupCoordinator,
        Role::ClinicStaff,
        Role::Clinic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StateAdmin => "state-admin",
            Self::StateCoordinator => "state-coordinator",
            Self::StateViewer => "state-viewer",
            Self::ProviderOfRecord => "provider-of-record",
            Self::VfcCoordinator => "vfc-coordinator",
            Self::BackupCoordinator => "backup-coordinator",
            Self::ClinicStaff => "clinic-staff",
            Self::Clinic => "clinic",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    pub fn scope_kind(self) -> ScopeKind {
        match self {
            Self::StateAdmin | Self::StateCoordinator | Self::StateViewer => ScopeKind::Program,
            Self::ClinicStaff => ScopeKind::Location,
            _ => ScopeKind::PinOrLocation,
        }
    }

    /// Reviews, approves, holds and releases for every PIN; edits the program's settings.
    pub fn is_state_coordinator(self) -> bool {
        matches!(self, Self::StateAdmin | Self::StateCoordinator)
    }

    /// May change anything at all (a state viewer only reads).
    pub fn writes(self) -> bool {
        self != Self::StateViewer
    }

    /// May create and change accounts (a state admin anyone's; a clinic's coordinators their
    /// own staff's).
    pub fn manages_accounts(self) -> bool {
        matches!(self, Self::StateAdmin | Self::ProviderOfRecord | Self::VfcCoordinator)
    }

    /// May create API tokens (for an EHR feed, a gateway script).
    pub fn makes_tokens(self) -> bool {
        matches!(
            self,
            Self::StateAdmin | Self::ProviderOfRecord | Self::VfcCoordinator | Self::BackupCoordinator
        )
    }

    /// A person holding this role must use a second factor (every state role, and anyone who
    /// can create accounts or tokens).
    pub fn needs_second_factor(self) -> bool {
        self.scope_kind() == ScopeKind::Program || self.manages_accounts() || self.makes_tokens()
    }

    /// How much a clinic role may do, for "no wider than its own": a coordinator may grant a
    /// coordinator, a backup or staff; never more than it holds.
    fn clinic_rank(self) -> u8 {
        match self {
            Self::ClinicStaff => 1,
            Self::BackupCoordinator => 2,
            Self::Clinic => 2,
            Self::VfcCoordinator | Self::ProviderOfRecord => 3,
            _ => 4,
        }
    }
}

/// A role at a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub scope: Scope,
}

impl Grant {
    /// Checks that the role is granted where it may be (a state role at the program, clinic
    /// staff at one location, a coordinator at a PIN or a location).
    pub fn check(&self) -> Result<(), String> {
        let ok = matches!(
            (self.role.scope_kind(), &self.scope),
            (ScopeKind::Program, Scope::Program)
                | (ScopeKind::PinOrLocation, Scope::Pin(_) | Scope::Location(_))
                | (ScopeKind::Location, Scope::Location(_))
        );
        if ok {
            return Ok(());
        }
        Err(match self.role.scope_kind() {
            ScopeKind::Program => format!(
                "{} is a program role: give neither \"pin\" nor \"location\"",
                self.role.as_str()
            ),
            ScopeKind::PinOrLocation => format!("{} needs \"pin\" or \"location\"", self.role.as_str()),
            ScopeKind::Location => format!("{} is granted at one location: give \"location\"", self.role.as_str()),
        })
    }

    /// Whether a holder of this grant may grant `other` (no wider role, no wider scope).
    pub fn may_grant(&self, other: &Grant) -> bool {
        match self.role {
            Role::StateAdmin => true,
            r if r.manages_accounts() => {
                other.role.scope_kind() != ScopeKind::Program
                    && other.role.clinic_rank() <= r.clinic_rank()
                    && self.scope.contains(&other.scope)
            }
            _ => false,
        }
    }
}

/// Who a caller is, for records of who did what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Token { id: i64, name: String },
    Account { id: i64, email: String, name: String },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub grants: Vec<Grant>,
    /// The union of the grants' scopes: what the caller sees.
    pub scope: Scope,
    /// Where the request came from (behind a trusted proxy, the client it names).
    pub client_addr: Option<String>,
}

impl Caller {
    pub fn new(principal: Principal, grants: Vec<Grant>) -> Caller {
        let scope = if grants.is_empty() {
            // No grant sees nothing: a location code no one can register.
            Scope::nothing()
        } else {
            Scope::union(grants.iter().map(|g| g.scope.clone()))
        };
        Caller {
            principal,
            grants,
            scope,
            client_addr: None,
        }
    }

    /// A caller holding one grant (the command line, a bench, a token).
    pub fn single(principal: Principal, role: Role, scope: Scope) -> Caller {
        Caller::new(principal, vec![Grant { role, scope }])
    }

    /// Reviews, approves, holds and releases for every PIN (a state admin or coordinator).
    pub fn is_state(&self) -> bool {
        self.grants.iter().any(|g| g.role.is_state_coordinator())
    }

    /// Only reads (every grant is `state-viewer`).
    pub fn read_only(&self) -> bool {
        !self.grants.iter().any(|g| g.role.writes())
    }

    /// Whether the caller is a person: only people, who sign in with a second factor, manage
    /// accounts and make tokens; a token (an EHR feed's credential) never does, whatever its
    /// role.
    pub fn is_person(&self) -> bool {
        matches!(self.principal, Principal::Account { .. })
    }

    pub fn may_manage_accounts(&self) -> bool {
        self.is_person() && self.grants.iter().any(|g| g.role.manages_accounts())
    }

    pub fn may_make_tokens(&self) -> bool {
        self.is_person() && self.grants.iter().any(|g| g.role.makes_tokens())
    }

    /// Whether some grant of the caller lets it grant `g`.
    pub fn may_grant(&self, g: &Grant) -> bool {
        self.is_person() && self.grants.iter().any(|mine| mine.may_grant(g))
    }

    /// The places whose people's accounts the caller manages (its account-managing grants).
    pub fn manage_scope(&self) -> Scope {
        let scopes: Vec<Scope> = self
            .grants
            .iter()
            .filter(|g| g.role.manages_accounts())
            .map(|g| g.scope.clone())
            .collect();
        if scopes.is_empty() || !self.is_person() {
            Scope::nothing()
        } else {
            Scope::union(scopes)
        }
    }

    /// The caller as it writes: only the grants that may make this change. A state viewer's
    /// program-wide grant lets its holder read every PIN, never write there; a clinic-staff
    /// grant counts only for what staff may do (`staff_may`), so a person who is staff at one
    /// location and coordinator at another changes the first's registry no more than staff do.
    pub fn writing(mut self, staff_may: bool) -> Caller {
        let writers: Vec<Grant> = self
            .grants
            .iter()
            .filter(|g| g.role.writes() && (staff_may || g.role != Role::ClinicStaff))
            .cloned()
            .collect();
        if writers.len() != self.grants.len() {
            self.scope = if writers.is_empty() {
                Scope::nothing()
            } else {
                Scope::union(writers.iter().map(|g| g.scope.clone()))
            };
        }
        self
    }

    /// Whether every grant the caller writes with is clinic staff: staff record stock, doses,
    /// daily checks and reviews, and change nothing of the registry, rules, accounts or tokens.
    pub fn only_staff(&self) -> bool {
        let writers: Vec<Role> = self.grants.iter().filter(|g| g.role.writes()).map(|g| g.role).collect();
        !writers.is_empty() && writers.iter().all(|r| *r == Role::ClinicStaff)
    }

    /// Whether some grant of the caller that makes tokens covers `g` with a role no wider.
    pub fn may_make_token(&self, g: &Grant) -> bool {
        self.is_person()
            && self.grants.iter().any(|mine| {
                mine.role.makes_tokens()
                    && (mine.role == Role::StateAdmin
                        || (g.role.scope_kind() != ScopeKind::Program
                            && g.role.clinic_rank() <= mine.role.clinic_rank().max(2)
                            && mine.scope.contains(&g.scope)))
            })
    }

    /// The account behind the caller, if a person.
    pub fn account_id(&self) -> Option<i64> {
        match &self.principal {
            Principal::Account { id, .. } => Some(*id),
            Principal::Token { .. } => None,
        }
    }

    /// How the caller is named in records of who did what.
    pub fn actor(&self) -> String {
        match &self.principal {
            Principal::Token { id, name } => format!("token:{id}:{name}"),
            Principal::Account { id, email, .. } => format!("account:{id}:{email}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(role: Role, scope: Scope) -> Grant {
        Grant { role, scope }
    }
    fn pin(p: &str) -> Scope {
        Scope::Pin(p.into())
    }
    fn loc(c: &str) -> Scope {
        Scope::Location(c.into())
    }

    #[test]
    fn a_coordinator_of_a_pin_may_invite_staff_to_its_suffix_location_only() {
        let me = g(Role::VfcCoordinator, pin("012345"));
        assert!(me.may_grant(&g(Role::ClinicStaff, loc("012345B"))));
        assert!(me.may_grant(&g(Role::VfcCoordinator, pin("012345"))));
        assert!(!me.may_grant(&g(Role::ClinicStaff, loc("054321A"))), "another PIN");
        assert!(!me.may_grant(&g(Role::StateViewer, Scope::Program)), "a state role");
    }

    #[test]
    fn a_coordinator_of_one_location_may_not_grant_its_whole_pin() {
        let me = g(Role::VfcCoordinator, loc("012345A"));
        assert!(!me.may_grant(&g(Role::ClinicStaff, pin("012345"))));
        assert!(!me.may_grant(&g(Role::ClinicStaff, loc("012345B"))));
        assert!(me.may_grant(&g(Role::BackupCoordinator, loc("012345A"))));
    }

    #[test]
    fn backups_staff_and_state_coordinators_grant_nothing() {
        for r in [Role::BackupCoordinator, Role::ClinicStaff, Role::Clinic] {
            assert!(!g(r, pin("012345")).may_grant(&g(Role::ClinicStaff, loc("012345A"))));
        }
        assert!(!g(Role::StateCoordinator, Scope::Program).may_grant(&g(Role::ClinicStaff, loc("012345A"))));
        assert!(g(Role::StateAdmin, Scope::Program).may_grant(&g(Role::StateAdmin, Scope::Program)));
    }

    #[test]
    fn a_person_with_grants_at_two_pins_sees_both_and_nothing_else() {
        let c = Caller::new(
            Principal::Token {
                id: 1,
                name: "t".into(),
            },
            vec![
                g(Role::VfcCoordinator, pin("012345")),
                g(Role::BackupCoordinator, loc("054321B")),
            ],
        );
        assert!(c.scope.covers_code("012345", "012345C"));
        assert!(c.scope.covers_code("054321", "054321B"));
        assert!(!c.scope.covers_code("054321", "054321A"));
        let (cond, param) = c.scope.sql_filter("pin", "code", 1);
        assert!(cond.contains("LIKE"));
        assert_eq!(param.as_deref(), Some(",location:054321B,pin:012345,"));
    }

    #[test]
    fn a_location_inside_a_pin_already_held_adds_nothing() {
        assert_eq!(Scope::union([pin("012345"), loc("012345B")]), pin("012345"));
        assert_eq!(Scope::union([loc("012345B"), Scope::Program]), Scope::Program);
    }

    #[test]
    fn roles_are_granted_only_at_their_kind_of_scope() {
        assert!(g(Role::StateAdmin, pin("012345")).check().is_err());
        assert!(g(Role::ClinicStaff, pin("012345")).check().is_err());
        assert!(g(Role::ClinicStaff, loc("012345A")).check().is_ok());
        assert!(g(Role::VfcCoordinator, Scope::Program).check().is_err());
    }

    #[test]
    fn second_factor_is_for_state_roles_and_whoever_makes_accounts_or_tokens() {
        let needs: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| r.needs_second_factor())
            .map(Role::as_str)
            .collect();
        assert_eq!(
            needs,
            [
                "state-admin",
                "state-coordinator",
                "state-viewer",
                "provider-of-record",
                "vfc-coordinator",
                "backup-coordinator"
            ]
        );
    }
}
