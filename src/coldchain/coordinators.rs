//! The state is told of a new VFC coordinator: a location's primary or backup contact who is
//! another person is emailed at once to the program's state coordinators (states require such
//! changes reported within 10 business days, docs/domain.md). The registry's audit row of the
//! change records it.

use futures_util::future::BoxFuture;
use sqlx::AnyConnection;

use crate::alerts::{outbox, About, Email, Recipient};
use crate::error::Result;
use crate::registry::locations::{ContactsWatcher, CoordinatorChange};

/// The state's watch on the registry's contacts: a new primary or backup coordinator is
/// emailed to the program's state coordinators, who must be told within 10 business days
/// (docs/domain.md). The audit row of the change records it.
pub struct StateIsTold;

impl ContactsWatcher for StateIsTold {
    fn coordinator_changed<'a>(
        &'a self,
        tx: &'a mut AnyConnection,
        c: CoordinatorChange<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let program = super::settings::program_in(tx).await?;
            if program.state_coordinators.is_empty() {
                tracing::warn!(
                    location = c.code,
                    role = c.role,
                    "a coordinator changed and the program names no state coordinator to tell"
                );
            }
            let subject = format!(
                "VFC coordinator change: {} {}, {} coordinator",
                c.code, c.location_name, c.role
            );
            let who = c.actor.splitn(3, ':').nth(2).unwrap_or(c.actor);
            let when = crate::store::rfc3339(c.at);
            let phone = |p: &Option<String>| p.clone().unwrap_or_else(|| "no phone".into());
            for person in &program.state_coordinators {
                let body = format!(
                    "{name},\n\n\
                     The {role} VFC coordinator of {loc} ({code}) changed at {when}, by {who}.\n\n\
                     Before: {bn} <{be}>, {bp}\n\
                     Now:    {an} <{ae}>, {ap}\n\n\
                     This is the change report the program requires within 10 business days. The new \
                     coordinator receives the location's alerts from now on, whether or not they have an account.\n\n\
                     — vfc-monitor\n",
                    name = person.name,
                    role = c.role,
                    loc = c.location_name,
                    code = c.code,
                    bn = c.before.name,
                    be = c.before.email,
                    bp = phone(&c.before.phone),
                    an = c.after.name,
                    ae = c.after.email,
                    ap = phone(&c.after.phone),
                );
                let to = Recipient::new(&person.name, &person.email);
                let email = Email {
                    about: About::Account,
                    purpose: "coordinator_change",
                    to: &to,
                    subject: &subject,
                    body: &body,
                };
                outbox::enqueue(tx, &email).await?;
            }
            Ok(())
        })
    }
}
