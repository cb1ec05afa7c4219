//! The activation pages of account managers (seed 004) and of the service's end users (seed
//! 003): the username (a user's is its user ID: an email or a mobile number) and temporary
//! password from the activation email, a new password twice, in the person's language (the
//! email's link says `?lang=fr` for French; otherwise the browser's preferred language decides).
//! Activation goes through the same core as `POST /v1/account-managers/activate` and
//! `POST /v1/users/activate`, with their rate limit and their one answer for a wrong username
//! and a wrong password.

use std::net::SocketAddr;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Page, csrf_ok, csrf_token, hidden};
use crate::domain::Language;
use crate::portal::AppState;
use crate::portal::account_managers::{MIN_PASSWORD_LENGTH, activate_with};
use crate::portal::problem::{ApiError, ProblemType};

#[derive(Debug, Deserialize)]
pub struct LanguageQuery {
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ActivationForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    temporary_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    repeat_password: String,
    #[serde(default)]
    lang: String,
    #[serde(default)]
    csrf: String,
}

/// Who the page activates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    AccountManager,
    User,
}

impl Audience {
    fn path(self) -> &'static str {
        match self {
            Audience::AccountManager => "/account-managers/activate",
            Audience::User => "/users/activate",
        }
    }

    fn words(self, french: bool) -> &'static Words {
        match (self, french) {
            (Audience::AccountManager, false) => &ENGLISH,
            (Audience::AccountManager, true) => &FRENCH,
            (Audience::User, false) => &USER_ENGLISH,
            (Audience::User, true) => &USER_FRENCH,
        }
    }

    async fn activate(
        self,
        state: &AppState,
        client: std::net::IpAddr,
        body: &crate::api::Activate,
    ) -> Result<(), ApiError> {
        match self {
            Audience::AccountManager => activate_with(state, client, body).await.map(|_| ()),
            Audience::User => crate::portal::users::activate_with(state, client, body)
                .await
                .map(|_| ()),
        }
    }
}

/// The page's words, in English and French.
struct Words {
    lang: &'static str,
    /// The username field's input type (`email`, or `text` for a user ID that may be a number).
    username_type: &'static str,
    eyebrow: &'static str,
    title: &'static str,
    intro: &'static str,
    username: &'static str,
    temporary: &'static str,
    new_password: &'static str,
    repeat: &'static str,
    policy: &'static str,
    submit: &'static str,
    mismatch: &'static str,
    too_short: &'static str,
    same_as_temporary: &'static str,
    wrong: &'static str,
    expired: &'static str,
    already_active: &'static str,
    too_many: &'static str,
    failed: &'static str,
    stale_form: &'static str,
    done_title: &'static str,
    done: &'static str,
}

const ENGLISH: Words = Words {
    lang: "en",
    username_type: "email",
    eyebrow: "Account manager",
    title: "Activate your account manager access",
    intro: "Enter the username and temporary password from your activation email, then choose your own password.",
    username: "Username (your email address)",
    temporary: "Temporary password",
    new_password: "New password",
    repeat: "New password again",
    policy: "At least 12 characters, and not the temporary password. A long phrase is easier to remember and harder to guess.",
    submit: "Activate",
    mismatch: "The two new passwords are not the same. Type them again.",
    too_short: "The new password is too short: use at least 12 characters.",
    same_as_temporary: "Choose a new password, not the temporary one.",
    wrong: "The username or temporary password is not right. Check the activation email and try again.",
    expired: "Your temporary password has expired. Ask an administrator for a new activation email.",
    already_active: "This account manager is already active. Sign in with your own password.",
    too_many: "Too many attempts from your network. Wait a minute, then try again.",
    failed: "The activation could not be completed. Try again in a minute.",
    stale_form: "This form had expired, so nothing was changed. Please fill it in again.",
    done_title: "Your access is active",
    done: "Your new password is set, and the temporary password no longer works. Sign in to the portal with your email address and your new password.",
};

const FRENCH: Words = Words {
    lang: "fr",
    username_type: "email",
    eyebrow: "Gestionnaire de compte",
    title: "Activez votre accès de gestionnaire de compte",
    intro: "Saisissez le nom d'utilisateur et le mot de passe temporaire de votre e-mail d'activation, puis choisissez votre propre mot de passe.",
    username: "Nom d'utilisateur (votre adresse e-mail)",
    temporary: "Mot de passe temporaire",
    new_password: "Nouveau mot de passe",
    repeat: "Nouveau mot de passe, à nouveau",
    policy: "Au moins 12 caractères, différent du mot de passe temporaire. Une longue phrase est plus facile à retenir et plus difficile à deviner.",
    submit: "Activer",
    mismatch: "Les deux nouveaux mots de passe ne sont pas identiques. Saisissez-les à nouveau.",
    too_short: "Le nouveau mot de passe est trop court : utilisez au moins 12 caractères.",
    same_as_temporary: "Choisissez un nouveau mot de passe, pas le mot de passe temporaire.",
    wrong: "Le nom d'utilisateur ou le mot de passe temporaire est incorrect. Vérifiez l'e-mail d'activation et réessayez.",
    expired: "Votre mot de passe temporaire a expiré. Demandez un nouvel e-mail d'activation à un administrateur.",
    already_active: "Ce gestionnaire de compte est déjà actif. Connectez-vous avec votre propre mot de passe.",
    too_many: "Trop de tentatives depuis votre réseau. Attendez une minute, puis réessayez.",
    failed: "L'activation n'a pas pu aboutir. Réessayez dans une minute.",
    stale_form: "Ce formulaire avait expiré : rien n'a été modifié. Veuillez le remplir à nouveau.",
    done_title: "Votre accès est actif",
    done: "Votre nouveau mot de passe est enregistré et le mot de passe temporaire ne fonctionne plus. Connectez-vous au portail avec votre adresse e-mail et votre nouveau mot de passe.",
};

const USER_ENGLISH: Words = Words {
    username_type: "text",
    eyebrow: "Voice service",
    title: "Activate your voice service account",
    intro: "Enter the user ID and temporary password from your activation email, then choose your own password.",
    username: "User ID (your email address or mobile number)",
    wrong: "The user ID or temporary password is not right. Check the activation email and try again.",
    already_active: "This account is already active. Sign in with your own password.",
    done_title: "Your account is active",
    done: "Your new password is set, and the temporary password no longer works. Sign in with your user ID and your new password.",
    ..ENGLISH
};

const USER_FRENCH: Words = Words {
    username_type: "text",
    eyebrow: "Service vocal",
    title: "Activez votre compte de service vocal",
    intro: "Saisissez l'identifiant et le mot de passe temporaire de votre e-mail d'activation, puis choisissez votre propre mot de passe.",
    username: "Identifiant (votre adresse e-mail ou numéro de mobile)",
    wrong: "L'identifiant ou le mot de passe temporaire est incorrect. Vérifiez l'e-mail d'activation et réessayez.",
    already_active: "Ce compte est déjà actif. Connectez-vous avec votre propre mot de passe.",
    done_title: "Votre compte est actif",
    done: "Votre nouveau mot de passe est enregistré et le mot de passe temporaire ne fonctionne plus. Connectez-vous avec votre identifiant et votre nouveau mot de passe.",
    ..FRENCH
};

fn words_for(audience: Audience, lang: Option<&str>, headers: &HeaderMap) -> &'static Words {
    let chosen = lang.map(str::to_owned).or_else(|| {
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(|first| first.trim().to_owned())
    });
    let french = chosen
        .as_deref()
        .and_then(|l| l.get(..2))
        .is_some_and(|l| l.eq_ignore_ascii_case(Language::Fr.as_str()));
    audience.words(french)
}

type LanguageParam = Result<Query<LanguageQuery>, axum::extract::rejection::QueryRejection>;
type ActivationPost = Result<Form<ActivationForm>, FormRejection>;

/// `GET /account-managers/activate`.
pub async fn form(state: State<AppState>, headers: HeaderMap, query: LanguageParam) -> Page {
    form_for(Audience::AccountManager, state, headers, query)
}

/// `GET /users/activate`.
pub async fn user_form(state: State<AppState>, headers: HeaderMap, query: LanguageParam) -> Page {
    form_for(Audience::User, state, headers, query)
}

/// `POST /account-managers/activate`.
pub async fn submit(
    state: State<AppState>,
    client: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: ActivationPost,
) -> Page {
    submit_for(Audience::AccountManager, state, client, headers, form).await
}

/// `POST /users/activate`.
pub async fn user_submit(
    state: State<AppState>,
    client: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: ActivationPost,
) -> Page {
    submit_for(Audience::User, state, client, headers, form).await
}

fn form_for(
    audience: Audience,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: LanguageParam,
) -> Page {
    let lang = query.ok().and_then(|Query(q)| q.lang);
    let words = words_for(audience, lang.as_deref(), &headers);
    let (csrf, set) = csrf_token(&state, &headers);
    activation_page(audience, words, &csrf, "", None).cookie(set)
}

fn activation_page(
    audience: Audience,
    words: &Words,
    csrf: &str,
    username: &str,
    error: Option<&str>,
) -> Page {
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let body: Markup = html! {
        section.card #activation data-outcome=(if error.is_some() { "refused" } else { "form" }) {
            p.eyebrow { (words.eyebrow) }
            h1 { (words.title) }
            p { (words.intro) }
            @if let Some(error) = error {
                p.problem #error role="alert" { (error) }
            }
            form method="post" action=(audience.path()) autocomplete="off" {
                (hidden("csrf", csrf))
                (hidden("lang", words.lang))
                label for="username" { (words.username) }
                input #username type=(words.username_type) name="username" value=(username) required autocomplete="username";
                label for="temporary_password" { (words.temporary) }
                input #temporary_password type="password" name="temporary_password" required autocomplete="current-password";
                label for="new_password" { (words.new_password) }
                input #new_password type="password" name="new_password" required minlength=(MIN_PASSWORD_LENGTH) autocomplete="new-password" aria-describedby="policy";
                label for="repeat_password" { (words.repeat) }
                input #repeat_password type="password" name="repeat_password" required minlength=(MIN_PASSWORD_LENGTH) autocomplete="new-password";
                p.muted #policy { (words.policy) }
                button.primary #activate type="submit" { (words.submit) }
            }
        }
    };
    Page::new(words.title, body).lang(words.lang).status(status)
}

async fn submit_for(
    audience: Audience,
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: ActivationPost,
) -> Page {
    let Ok(Form(form)) = form else {
        let words = words_for(audience, None, &headers);
        let (csrf, set) = csrf_token(&state, &headers);
        return activation_page(audience, words, &csrf, "", Some(words.stale_form)).cookie(set);
    };
    let words = words_for(audience, Some(&form.lang), &headers);
    let (csrf, set) = csrf_token(&state, &headers);
    let username = form.username.trim();
    if !csrf_ok(&headers, &form.csrf) {
        return activation_page(audience, words, &csrf, username, Some(words.stale_form))
            .cookie(set);
    }
    if form.new_password != form.repeat_password {
        return activation_page(audience, words, &csrf, username, Some(words.mismatch));
    }
    let body = crate::api::Activate {
        username: username.to_owned(),
        temporary_password: form.temporary_password.clone(),
        new_password: form.new_password.clone(),
    };
    match audience.activate(&state, client.ip(), &body).await {
        Ok(()) => Page::new(
            words.done_title,
            html! {
                section.card #activation data-outcome="activated" {
                    p.eyebrow { (words.eyebrow) }
                    h1 { (words.done_title) }
                    p.success { (words.done) }
                }
            },
        )
        .lang(words.lang),
        Err(error) => {
            let message = if error.kind == ProblemType::ValidationFailed
                && form.new_password == form.temporary_password
            {
                words.same_as_temporary
            } else {
                refusal_words(words, &error)
            };
            let mut page = activation_page(audience, words, &csrf, username, Some(message));
            if error.kind == ProblemType::TooManyRequests {
                page = page.status(StatusCode::TOO_MANY_REQUESTS);
            }
            page
        }
    }
}

fn refusal_words(words: &'static Words, error: &ApiError) -> &'static str {
    match error.kind {
        ProblemType::InvalidCredentials => words.wrong,
        ProblemType::ActivationExpired => words.expired,
        ProblemType::AlreadyActive => words.already_active,
        ProblemType::TooManyRequests => words.too_many,
        ProblemType::ValidationFailed => words.too_short,
        _ => words.failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_page_speaks_the_link_s_language_then_the_browser_s() {
        let mut headers = HeaderMap::new();
        let words = |lang, headers: &HeaderMap| words_for(Audience::AccountManager, lang, headers);
        assert_eq!(words(None, &headers).lang, "en");
        assert_eq!(words(Some("fr"), &headers).lang, "fr");
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("fr-CA,fr;q=0.9,en;q=0.8"),
        );
        assert_eq!(words(None, &headers).lang, "fr");
        assert_eq!(words(Some("en"), &headers).lang, "en", "the link wins");
        let user = words_for(Audience::User, None, &headers);
        assert_eq!(
            (user.lang, user.username_type),
            ("fr", "text"),
            "a user ID may be a number"
        );
    }
}
