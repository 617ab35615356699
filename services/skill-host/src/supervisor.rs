//! The host's skills at runtime: each one supervised by its own task, added, removed,
//! restarted and reloaded while the others run untouched, and all stopped at shutdown.

use crate::error::SkillHostError;
use crate::pool::SkillPool;
use crate::skill::{supervise_skill, Skill, SkillRuntime};
use crate::skills_file::SkillSpec;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Supervised {
    pool: Arc<SkillPool>,
    stop: CancellationToken,
    /// One supervision task per instance.
    tasks: Vec<JoinHandle<()>>,
}

/// What a reload changed, by skill name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Skills new in the file, started.
    pub added: Vec<String>,
    /// Skills gone from the file, stopped.
    pub removed: Vec<String>,
    /// Skills whose entry changed, restarted with the new one.
    pub changed: Vec<String>,
    /// Skills left running as they were.
    pub unchanged: Vec<String>,
}

/// Owns every skill's supervision task.
pub struct Supervisor {
    runtime: SkillRuntime,
    /// Parent of every skill's stop token: cancelled at shutdown.
    shutdown: CancellationToken,
    skills: Mutex<BTreeMap<String, Supervised>>,
    /// The skills that came from the skills file (at start or by a reload); a reload
    /// changes only these, never a skill added at runtime under another name.
    from_file: Mutex<std::collections::BTreeSet<String>>,
    /// Serialises add, remove, restart and reload, so that each sees the table it changes.
    changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Supervisor")
            .field("skills", &self.names())
            .finish()
    }
}

impl Supervisor {
    /// Returns a supervisor with no skills; `shutdown` stops every skill it will run.
    pub fn new(runtime: SkillRuntime, shutdown: CancellationToken) -> Self {
        Self {
            runtime,
            shutdown,
            skills: Mutex::new(BTreeMap::new()),
            from_file: Mutex::default(),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<String, Supervised>> {
        self.skills.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every skill now, in name order.
    pub fn skills(&self) -> Vec<Arc<SkillPool>> {
        self.table().values().map(|s| s.pool.clone()).collect()
    }

    /// The names of every skill, in order.
    pub fn names(&self) -> Vec<String> {
        self.table().keys().cloned().collect()
    }

    /// The skill called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<SkillPool>, SkillHostError> {
        let table = self.table();
        match table.get(name) {
            Some(supervised) => Ok(supervised.pool.clone()),
            None => Err(SkillHostError::SkillNotFound {
                skill: name.to_string(),
                configured: table.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Starts the skills of the skills file read at start; one that cannot start is logged
    /// and the others go on.
    pub async fn add_from_file(&self, skills: &BTreeMap<String, SkillSpec>) {
        let _change = self.changes.lock().await;
        for (name, spec) in skills {
            match self.add_locked(name, spec.clone()) {
                Ok(_) => {
                    self.file_names().insert(name.clone());
                }
                Err(error) => tracing::error!(skill = %name, %error, "skill not started"),
            }
        }
    }

    fn file_names(&self) -> MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.from_file.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new skill; refuses a name in use and a host already at its skill limit.
    pub async fn add(&self, name: &str, spec: SkillSpec) -> Result<Arc<SkillPool>, SkillHostError> {
        let _change = self.changes.lock().await;
        self.add_locked(name, spec)
    }

    fn add_locked(&self, name: &str, spec: SkillSpec) -> Result<Arc<SkillPool>, SkillHostError> {
        let mut table = self.table();
        if table.contains_key(name) {
            return Err(SkillHostError::SkillExists(name.to_string()));
        }
        let limit = self.runtime.config.max_skills;
        if table.len() >= limit {
            return Err(SkillHostError::TooManySkills { limit });
        }
        let manifest = self
            .runtime
            .manifests
            .as_ref()
            .and_then(|store| store.load(name, &spec));
        let stop = self.shutdown.child_token();
        let instances: Vec<Arc<Skill>> = (0..spec.instances.max(1))
            .map(|_| {
                Arc::new(Skill::new(
                    name,
                    spec.clone(),
                    manifest.clone(),
                    self.runtime.config.stderr_lines_kept,
                ))
            })
            .collect();
        let tasks = instances
            .iter()
            .map(|instance| {
                tokio::spawn(supervise_skill(
                    instance.clone(),
                    self.runtime.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        let pool = Arc::new(SkillPool::new(name, spec, instances));
        table.insert(
            name.to_string(),
            Supervised {
                pool: pool.clone(),
                stop,
                tasks,
            },
        );
        Ok(pool)
    }

    /// Stops a skill (its whole process group) and forgets it.
    pub async fn remove(&self, name: &str) -> Result<(), SkillHostError> {
        let _change = self.changes.lock().await;
        self.remove_locked(name).await?;
        self.forget_manifest(name);
        Ok(())
    }

    /// Drops the stored manifest of a skill that is gone for good.
    fn forget_manifest(&self, name: &str) {
        if let Some(store) = &self.runtime.manifests {
            store.forget(name);
        }
    }

    async fn remove_locked(&self, name: &str) -> Result<(), SkillHostError> {
        let removed = self.table().remove(name);
        let Some(supervised) = removed else {
            return Err(self
                .get(name)
                .expect_err("the skill was just found missing"));
        };
        supervised.stop.cancel();
        for task in supervised.tasks {
            let _ = task.await;
        }
        self.runtime.catalog_changed.notify_one();
        tracing::info!(skill = name, "skill removed");
        Ok(())
    }

    /// Stops a skill and starts it again with the same spec and a fresh restart budget.
    pub async fn restart(&self, name: &str) -> Result<Arc<SkillPool>, SkillHostError> {
        let _change = self.changes.lock().await;
        let spec = self.get(name)?.spec().clone();
        self.remove_locked(name).await?;
        tracing::info!(skill = name, "skill restarted on request");
        self.add_locked(name, spec)
    }

    /// Applies `desired` (a freshly read skills file): starts new skills, stops removed ones,
    /// restarts changed ones, and leaves the rest running. A skill that cannot be added (the
    /// skill limit) is reported in the error after the others are applied.
    pub async fn reload(
        &self,
        desired: BTreeMap<String, SkillSpec>,
    ) -> Result<ReloadSummary, SkillHostError> {
        let _change = self.changes.lock().await;
        let current: BTreeMap<String, SkillSpec> = self
            .table()
            .iter()
            .map(|(name, s)| (name.clone(), s.pool.spec().clone()))
            .collect();
        let from_file = self.file_names().clone();
        let mut summary = ReloadSummary::default();
        for (name, spec) in &desired {
            match current.get(name) {
                None => summary.added.push(name.clone()),
                // A runtime skill of the same name is taken over by the file's entry.
                Some(running) if running != spec || !from_file.contains(name) => {
                    summary.changed.push(name.clone())
                }
                Some(_) => summary.unchanged.push(name.clone()),
            }
        }
        summary.removed = from_file
            .iter()
            .filter(|name| !desired.contains_key(*name) && current.contains_key(*name))
            .cloned()
            .collect();
        let stopping: Vec<String> = summary
            .removed
            .iter()
            .chain(&summary.changed)
            .cloned()
            .collect();
        self.remove_all_locked(&stopping).await;
        for name in &summary.removed {
            self.forget_manifest(name);
        }
        let mut refused = None;
        for name in summary.changed.iter().chain(&summary.added) {
            if let Err(error) = self.add_locked(name, desired[name].clone()) {
                tracing::error!(skill = %name, %error, "skill from the reloaded file not started");
                refused.get_or_insert(error);
            }
        }
        *self.file_names() = desired.keys().cloned().collect();
        tracing::info!(added = ?summary.added, removed = ?summary.removed, changed = ?summary.changed,
            unchanged = summary.unchanged.len(), "skills file reloaded");
        match refused {
            Some(error) => Err(error),
            None => Ok(summary),
        }
    }

    /// Stops the named skills all at once and waits until each is gone.
    async fn remove_all_locked(&self, names: &[String]) {
        let removed: Vec<Supervised> = {
            let mut table = self.table();
            names.iter().filter_map(|name| table.remove(name)).collect()
        };
        for supervised in &removed {
            supervised.stop.cancel();
        }
        for supervised in removed {
            for task in supervised.tasks {
                let _ = task.await;
            }
            tracing::info!(skill = supervised.pool.name(), "skill removed");
        }
        self.runtime.catalog_changed.notify_one();
    }

    /// Starts stopping every skill without waiting (calls still open on them fail).
    pub fn stop_all(&self) {
        self.shutdown.cancel();
    }

    /// Stops every skill and waits until each process group is gone.
    pub async fn shutdown(&self) {
        let _change = self.changes.lock().await;
        self.shutdown.cancel();
        let running: Vec<Supervised> = std::mem::take(&mut *self.table()).into_values().collect();
        for supervised in running {
            for task in supervised.tasks {
                let _ = task.await;
            }
        }
    }
}
