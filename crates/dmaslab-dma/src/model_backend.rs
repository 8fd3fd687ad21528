//! The cache model as a [`CacheMaintenance`] backend: the deterministic one, for `dmaslab demo`
//! and the tests. It follows either Linux arch rule for `FromDevice` at map time, as chosen.

use crate::cache_model::{CacheModel, CacheStats};
use crate::direction::FromDeviceMap;
use crate::maintenance::CacheMaintenance;
use crate::ram::Ram;
use alloc::vec;

/// A [`CacheModel`] over a simulated [`Ram`]: maintenance writes the model's dirty lines back to
/// that RAM or drops them, and the bounce copies are CPU loads and stores through the model.
///
/// Linux arch rule: either. [`FromDeviceMap::Clean`] cleans a `FromDevice` buffer at map, as
/// arm64 does since 2022; [`FromDeviceMap::Invalidate`] invalidates it, as older 32-bit Arm did
/// (whole lines, so a dirty neighbour in a shared line is lost at map time).
pub struct ModelBackend {
    cache: CacheModel,
    ram: Ram,
    from_device_map: FromDeviceMap,
}

impl ModelBackend {
    /// The model `cache` over `ram`, following `from_device_map`.
    pub fn new(cache: CacheModel, ram: Ram, from_device_map: FromDeviceMap) -> Self {
        ModelBackend {
            cache,
            ram,
            from_device_map,
        }
    }

    /// The cache model.
    pub fn cache(&self) -> &CacheModel {
        &self.cache
    }

    /// The cache model and the RAM under it, for CPU loads and stores.
    pub fn parts(&mut self) -> (&mut CacheModel, &Ram) {
        (&mut self.cache, &self.ram)
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

impl CacheMaintenance for ModelBackend {
    fn line_size(&self) -> usize {
        self.cache.line()
    }

    fn arch_rule(&self) -> FromDeviceMap {
        self.from_device_map
    }

    fn clean(&mut self, addr: usize, len: usize) {
        self.cache.clean_range(&self.ram, addr, len);
    }

    unsafe fn invalidate(&mut self, addr: usize, len: usize) {
        // A simulated cache: losing its dirty data is the hazard it shows, not memory unsafety.
        self.cache.invalidate_range(addr, len);
    }

    fn clean_invalidate(&mut self, addr: usize, len: usize) {
        self.cache.flush_range(&self.ram, addr, len);
    }

    unsafe fn cpu_copy(&mut self, src: *const u8, dst: *mut u8, len: usize) {
        // Through the model by address; the RAM checks that both ranges are its own.
        let mut tmp = vec![0u8; len];
        self.cache.read(&self.ram, src as usize, &mut tmp);
        self.cache.write(&self.ram, dst as usize, &tmp);
    }
}
