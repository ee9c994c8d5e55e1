//! The translation context: what loading a configuration carries from the first file to
//! validation ([`Translation`]), and the view of it that lowering one Kubernetes object works
//! through ([`ObjectCx`]).
//!
//! Everything a front-end reports about an object goes through its [`ObjectCx`], which knows
//! the object: per-object status (accepted, or rejected with a reason) can be kept there
//! without another change to the front-ends' signatures.

use crate::de::Doc;
use crate::error::Warning;
use crate::k8s::{Meta, Ref};
use crate::options::LoadOptions;
use crate::report::Notes;
use crate::sources::{Origin, Sources};
use crate::status::{Reason, Recorded};

/// What the front-ends produce and report while a configuration loads. Cloned after the files
/// are read, so each pass of lowering (one more rejected object left out) starts from the same.
#[derive(Clone)]
pub(crate) struct Translation {
    pub options: LoadOptions,
    /// What validation builds the table from.
    pub sources: Sources,
    /// Fields accepted but not implemented, replaced objects, ...: shown with the table, or
    /// with the error that refused it.
    pub warnings: Vec<Warning>,
    /// Per file: what was loaded and what was scoped out.
    pub notes: Notes,
    /// Per object: scoped out, not accepted, or with references that do not resolve.
    pub recorded: Recorded,
}

impl Translation {
    pub fn new(options: &LoadOptions) -> Self {
        Translation {
            options: options.clone(),
            sources: Sources::default(),
            warnings: Vec::new(),
            notes: Notes::default(),
            recorded: Recorded::default(),
        }
    }

    /// The context for lowering `object`, one of `objects` (its front-end's objects, which its
    /// references name).
    pub fn object<'c, S>(&'c mut self, object: Ref<'c, S>, objects: &'c [Ref<'c, S>]) -> ObjectCx<'c, S> {
        ObjectCx { object, objects, translation: self }
    }
}

/// Lowering one Kubernetes object: the object, its peers, and the translation it adds to.
pub(crate) struct ObjectCx<'c, S> {
    pub object: Ref<'c, S>,
    /// Every object of the same front-end, in load order: delegates, ReferenceGrants and name
    /// clashes are looked up here.
    pub objects: &'c [Ref<'c, S>],
    translation: &'c mut Translation,
}

impl<'c, S> ObjectCx<'c, S> {
    pub fn meta(&self) -> &'c Meta {
        self.object.meta
    }

    pub fn doc(&self) -> Doc<'c> {
        self.object.meta.at.doc()
    }

    pub fn namespace(&self) -> &'c str {
        &self.object.meta.namespace
    }

    pub fn options(&self) -> &LoadOptions {
        &self.translation.options
    }

    pub fn sources(&mut self) -> &mut Sources {
        &mut self.translation.sources
    }

    /// `path` of this object, for what validation reports later.
    pub fn origin(&self, path: &str) -> Origin {
        self.doc().origin(path)
    }

    /// A warning at `path` of this object.
    pub fn warn(&mut self, path: &str, message: impl AsRef<str>) {
        let warning = self.doc().warning(path, message);
        self.translation.warnings.push(warning);
    }

    /// A warning at `origin`, a place in this object (or a delegate it splices in).
    pub fn warn_at(&mut self, origin: &Origin, message: impl AsRef<str>) {
        self.translation.warnings.push(Warning::new(&origin.file, &origin.path, message));
    }

    /// What this object contributes (`--check-config`'s "loaded").
    pub fn loaded(&mut self, what: String) {
        let meta = self.object.meta;
        self.translation.notes.file(&meta.at.file).loaded.push(format!("{}: {what}", meta.title()));
    }

    /// Why this object, valid, is not served here (`--check-config`'s "scoped out"): it is
    /// for another gateway.
    pub fn scoped_out(&mut self, why: String) {
        self.scoped_out_because(Reason::NotThisGateway, why);
    }

    /// [`Self::scoped_out`], with the condition reason its status reports.
    pub fn scoped_out_because(&mut self, reason: Reason, why: String) {
        let meta = self.object.meta;
        self.translation.notes.file(&meta.at.file).scoped_out.push(format!("{}: {why}", meta.title()));
        if let Some(id) = meta.at.object {
            self.translation.recorded.scoped_out(id, reason, why);
        }
    }

    /// This object is for this gateway but not accepted (`Accepted=False`, `reason`), without
    /// being wrong: a route its parent's listeners do not allow. It contributes nothing.
    pub fn not_accepted(&mut self, reason: Reason, why: String) {
        let meta = self.object.meta;
        self.translation.notes.file(&meta.at.file).scoped_out.push(format!("{}: not accepted ({}): {why}", meta.title(), reason.as_str()));
        if let Some(id) = meta.at.object {
            self.translation.recorded.not_accepted(id, reason, why);
        }
    }

    /// This object's name in route names (see [`crate::k8s::names::route_name_base`]).
    pub fn route_name_base(&self) -> String {
        crate::k8s::names::route_name_base(self.object.meta, self.objects.iter().map(|o| o.meta))
    }

    /// Lowering `other` (a delegate VirtualService) on behalf of this object.
    pub fn for_object(&mut self, other: Ref<'c, S>) -> ObjectCx<'_, S> {
        ObjectCx { object: other, objects: self.objects, translation: &mut *self.translation }
    }
}
