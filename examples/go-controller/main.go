// Command go-controller is a small cluster controller that embeds kvc instead of depending on
// etcd or ZooKeeper, the way the Apache Kvrocks controller would, written in Go: the Go twin of
// examples/embedded-controller/main.cc. Three instances form a cluster; only the one that leads
// runs the periodic job (it learns when through the Kvrocks store adapter's LeaderChange), and
// the job keeps the cluster topology under a key prefix:
//
//	/kvrocks/namespaces/<ns>                               -> namespace record
//	/kvrocks/namespaces/<ns>/clusters/<cluster>            -> cluster record
//	/kvrocks/namespaces/<ns>/clusters/<cluster>/shards/<i> -> shard record (JSON)
//	/kvrocks/controller/heartbeat                          -> "<name> <round>" of the leader
//
// Build (docs/go.md says how to point cgo at libkvc): go build -o go-controller .
// Run three (each in its own terminal, or with &):
//
//	go-controller --name c1 --data-dir /tmp/c1 --listen-peer 127.0.0.1:7001 \
//	  --listen-client 127.0.0.1:7101 \
//	  --initial-cluster c1=127.0.0.1:7001,c2=127.0.0.1:7002,c3=127.0.0.1:7003
//
// then watch it work with: kvc-ctl --endpoints 127.0.0.1:7101 list /kvrocks/ --keys-only
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"kvc.dev/kvc"
	"kvc.dev/kvc/kvrocks"
)

// runRound is one round of the controller's job: make sure the topology records exist, move a
// shard's primary around (as a failover would), and record that this member ran the round.
// Every write is compare-and-set on the revision it read, so two controllers could never both
// apply a stale decision.
func runRound(ctx context.Context, e *kvc.Engine, name string, round uint64) error {
	const ns = "/kvrocks/namespaces/ns1"
	const cluster = ns + "/clusters/c1"
	for _, r := range [][2]string{{ns, `{"name":"ns1"}`}, {cluster, `{"name":"c1","version":1}`}} {
		exists, err := e.Exists(ctx, r[0])
		if err != nil {
			return err
		}
		if !exists {
			if _, err := e.CAS(ctx, r[0], []byte(r[1]), 0); err != nil &&
				!errors.Is(err, kvc.ErrCompareFailed) {
				return err
			}
		}
	}
	for shard := uint64(0); shard < 2; shard++ {
		key := fmt.Sprintf("%s/shards/%d", cluster, shard)
		expect := uint64(0)
		cur, err := e.Get(ctx, key)
		switch {
		case err == nil:
			expect = cur.ModRevision
		case !errors.Is(err, kvc.ErrNotFound):
			return err
		}
		value := fmt.Sprintf(`{"primary":"10.0.0.%d:6666","round":%d}`, shard*10+round%3, round)
		if _, err := e.CAS(ctx, key, []byte(value), expect); err != nil &&
			!errors.Is(err, kvc.ErrCompareFailed) {
			return err
		}
	}
	_, err := e.Set(ctx, "/kvrocks/controller/heartbeat", []byte(fmt.Sprintf("%s %d", name, round)))
	return err
}

func main() {
	var o kvc.Options
	flag.StringVar(&o.Name, "name", "", "this member's name")
	flag.StringVar(&o.DataDir, "data-dir", "", "its data directory")
	flag.StringVar(&o.ListenPeer, "listen-peer", "", "HOST:PORT for the other members")
	flag.StringVar(&o.ListenClient, "listen-client", "", "HOST:PORT for clients (kvc-ctl)")
	flag.StringVar(&o.InitialCluster, "initial-cluster", "", "NAME=HOST:PORT,...")
	flag.StringVar(&o.ClusterToken, "cluster-token", "kvrocks-controller", "the cluster's token")
	runFor := flag.Duration("run-for", time.Hour, "how long to run")
	flag.Parse()
	if o.Name == "" || o.DataDir == "" || o.ListenPeer == "" {
		fmt.Fprintln(os.Stderr, "usage: go-controller --name N --data-dir D --listen-peer H:P "+
			"[--listen-client H:P] --initial-cluster N=H:P,... [--run-for DURATION]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *runFor)
	defer cancel()

	store, err := kvrocks.Open(o, kvrocks.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-controller:", err)
		os.Exit(1)
	}
	leading := false
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	round := uint64(0)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case leading = <-store.LeaderChange():
			verb := "stopping"
			if leading {
				verb = "starting"
			}
			fmt.Printf("%s: %s the controller job (leader %s)\n", o.Name, verb, store.Leader())
		case <-ticker.C:
			if !leading || !store.Engine().IsReady() {
				continue
			}
			round++
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			if err := runRound(rctx, store.Engine(), o.Name, round); err != nil {
				fmt.Fprintf(os.Stderr, "%s: round %d failed: %v\n", o.Name, round, err)
			}
			rcancel()
		}
	}
	if err := store.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "go-controller:", err)
		os.Exit(1)
	}
}
