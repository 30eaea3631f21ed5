package kvrocks

import (
	"reflect"
	"testing"

	"kvc.dev/kvc"
)

func kvs(keys ...string) []kvc.KeyValue {
	out := make([]kvc.KeyValue, len(keys))
	for i, k := range keys {
		out[i] = kvc.KeyValue{Key: k, Value: []byte("v" + k)}
	}
	return out
}

func keys(entries []Entry) []string {
	out := []string{}
	for _, e := range entries {
		out = append(out, e.Key)
	}
	return out
}

func TestListPrefix(t *testing.T) {
	for in, want := range map[string]string{"/a/b": "/a/b/", "/a/b/": "/a/b/", "/a/b//": "/a/b/",
		"": "/", "/": "/"} {
		if got := ListPrefix(in); got != want {
			t.Errorf("ListPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

// FirstLevel as the controller's etcd engine lists: the prefix itself and deeper keys skipped,
// keys relative to the prefix, values kept, order kept.
func TestFirstLevel(t *testing.T) {
	in := kvs("/kvrocks/ns", "/kvrocks/ns/a", "/kvrocks/ns/a/shards/0", "/kvrocks/ns/b",
		"/kvrocks/ns/b/", "/kvrocks/ns//c", "/kvrocks/nsx", "/kvrocks/ns/d")
	got := FirstLevel("/kvrocks/ns", in)
	if want := []string{"a", "b", "c", "d"}; !reflect.DeepEqual(keys(got), want) {
		t.Fatalf("keys %q, want %q", keys(got), want)
	}
	if string(got[0].Value) != "v/kvrocks/ns/a" || string(got[3].Value) != "v/kvrocks/ns/d" {
		t.Fatalf("values %q %q", got[0].Value, got[3].Value)
	}
	// A trailing "/" lists the same level.
	if a, b := keys(FirstLevel("/kvrocks/ns/", in)), keys(got); !reflect.DeepEqual(a, b) {
		t.Fatalf("with a trailing /: %q, without: %q", a, b)
	}
	// The root: the first level of absolute keys.
	root := keys(FirstLevel("", kvs("/a", "/a/b", "/c")))
	if !reflect.DeepEqual(root, []string{"a", "c"}) {
		t.Fatalf("root: %q", root)
	}
	if got := FirstLevel("/none", nil); got == nil || len(got) != 0 {
		t.Fatalf("nothing listed: %#v, want an empty slice", got)
	}
}
