package server

import (
	"context"
	"fmt"
	"sync"

	"github.com/tokensvc/tokensvc/server/audit"
	"github.com/tokensvc/tokensvc/server/keys"
)

// keySync keeps the store's record of partner key ids (Store.KeyIDs) in
// step with the keys in force. While a key is absent its tokens are
// refused anyway (the access table's "key no longer configured" rule);
// revoking them in the store when it goes makes that final, so a key that
// comes back does not bring its old tokens back. Because the record is in
// the store, a key removed while every instance restarted is found gone
// at the next start-up too.
type keySync struct {
	mu      sync.Mutex
	pending bool // the last sync failed: RetryKeySync runs it again
}

// SyncKeys revokes, for every instance sharing the store, the tokens of
// every partner key the store knows of that is configured no more, then
// records the keys in force. cmd calls it at start-up, KeysChanged after
// every change of the key set, and RetryKeySync after a failure. With
// Config.KeepRemovedKeyTokens it does nothing.
//
// Instances sharing a store should share a key source (a file or key
// server): an instance started with an older inline key list revokes the
// tokens of keys added since.
func (s *Server) SyncKeys(ctx context.Context) error {
	if s.cfg.KeepRemovedKeyTokens {
		return nil
	}
	s.keySync.mu.Lock()
	defer s.keySync.mu.Unlock()
	err := s.syncKeys(ctx)
	s.keySync.pending = err != nil
	return err
}

func (s *Server) syncKeys(ctx context.Context) error {
	known, err := s.cfg.Store.KeyIDs(ctx)
	if err != nil {
		return fmt.Errorf("read the known partner keys: %w", err)
	}
	current := map[string]bool{}
	for _, k := range s.cfg.Partners.Keys() {
		current[k.ID] = true
	}
	var gone []string
	for _, id := range known {
		if !current[id] {
			epoch, err := s.cfg.Store.RevokeKey(ctx, id)
			s.recordKeyRemoval(ctx, id, epoch, err)
			if err != nil {
				return fmt.Errorf("revoke the tokens of removed key %q: %w", id, err)
			}
			s.log.InfoContext(ctx, "revoked every token of a removed key", "key_id", id, "epoch", epoch)
			gone = append(gone, id)
		}
		delete(current, id)
	}
	added := make([]string, 0, len(current))
	for id := range current {
		added = append(added, id)
	}
	if err := s.cfg.Store.SetKeyIDs(ctx, added, gone); err != nil {
		return fmt.Errorf("record the partner keys: %w", err)
	}
	return nil
}

// KeysChanged takes a change of the partner key set (keys.Registry's
// OnChange): it is recorded in the audit trail, and the store's record of
// keys is synced with it; a failure is logged and retried by RetryKeySync
// (the tokens stay refused meanwhile).
func (s *Server) KeysChanged(ch keys.Change) {
	// No request waits on this event: a failure to record it is counted
	// and logged by the trail.
	_ = s.trail.Record(context.Background(), s.keyReloadEvent(ch.Generation, ch.Added, ch.Removed))
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	if err := s.SyncKeys(ctx); err != nil {
		s.log.Error("could not sync the partner keys with the store; their tokens stay refused while absent, and the sync is retried",
			"generation", ch.Generation, "removed", ch.Removed, "err", err)
	}
}

// RetryKeySync runs SyncKeys again if the last one failed.
func (s *Server) RetryKeySync(ctx context.Context) error {
	s.keySync.mu.Lock()
	pending := s.keySync.pending
	s.keySync.mu.Unlock()
	if !pending {
		return nil
	}
	return s.SyncKeys(ctx)
}

// recordKeyRemoval records the revocation of a removed key's tokens (its
// new epoch), or its failure, in the audit trail.
func (s *Server) recordKeyRemoval(ctx context.Context, keyID string, epoch uint64, err error) {
	e := audit.Event{Time: s.cfg.Now(), Event: audit.Revoke, Outcome: audit.OK, By: audit.ByKeyRemoval, Scope: audit.ScopeKey, KeyID: keyID, Epoch: epoch}
	if err != nil {
		ee, _ := toError(err)
		e.Outcome = string(ee.Code)
	}
	_ = s.trail.Record(ctx, e)
}
