package loopback_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/pgrotate/rotating/internal/loopback"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheckAddr(t *testing.T) {
	cases := []struct {
		addr        string
		ok          bool
		notLoopback bool // the error wraps ErrNotLoopback
	}{
		{"127.0.0.1:0", true, false},
		{"127.0.0.2:8080", true, false},
		{"[::1]:8200", true, false},
		{"localhost:2773", true, false},
		{":8080", false, true}, // every interface
		{"0.0.0.0:8080", false, true},
		{"10.1.2.3:80", false, true},
		{"[::]:80", false, true},
		{"example.com:80", false, true},
		{"no-port", false, false},
		{"", false, false},
	}
	for _, tc := range cases {
		err := loopback.CheckAddr(tc.addr)
		if (err == nil) != tc.ok {
			t.Errorf("CheckAddr(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
		if got := errors.Is(err, loopback.ErrNotLoopback); got != tc.notLoopback {
			t.Errorf("CheckAddr(%q) = %v: errors.Is(ErrNotLoopback) = %v, want %v", tc.addr, err, got, tc.notLoopback)
		}
		if err != nil && !strings.Contains(err.Error(), tc.addr) {
			t.Errorf("CheckAddr(%q) = %v: does not name the address", tc.addr, err)
		}
	}
}

// fakeListener is bound to an address that is not loopback, without
// listening anywhere.
type fakeListener struct {
	net.Listener
	addr   net.Addr
	closed bool
}

func (l *fakeListener) Addr() net.Addr { return l.addr }
func (l *fakeListener) Close() error   { l.closed = true; return nil }

func TestCheckListener(t *testing.T) {
	ln, err := loopback.Listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := loopback.CheckListener(ln); err != nil {
		t.Errorf("CheckListener(%s) = %v", ln.Addr(), err)
	}
	for _, addr := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 80},
		&net.TCPAddr{IP: net.IPv4zero, Port: 80},
		&net.UnixAddr{Name: "/tmp/sock", Net: "unix"},
	} {
		fl := &fakeListener{addr: addr}
		if err := loopback.CheckListener(fl); !errors.Is(err, loopback.ErrNotLoopback) {
			t.Errorf("CheckListener(%s) = %v, want ErrNotLoopback", addr, err)
		}
		if !fl.closed {
			t.Errorf("CheckListener(%s) left the listener open", addr)
		}
	}
	if _, err := loopback.Listen(t.Context(), "0.0.0.0:0"); !errors.Is(err, loopback.ErrNotLoopback) {
		t.Errorf("Listen(0.0.0.0:0) = %v, want ErrNotLoopback", err)
	}
}

// TestServeHTTP serves a handler until stop is closed, and again until
// ctx ends: a request is answered while serving, a request that hangs ends
// with ctx (its context derives from it), and afterwards the port refuses
// connections.
func TestServeHTTP(t *testing.T) {
	for _, how := range []string{"stop", "ctx"} {
		t.Run(how, func(t *testing.T) {
			ln, err := loopback.Listen(t.Context(), "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			stop := make(chan struct{})
			hung := make(chan error, 1)
			reached := make(chan struct{})
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/hang" {
					close(reached)
					<-r.Context().Done()
					hung <- r.Context().Err()
					return
				}
				io.WriteString(w, "ok")
			})
			served := make(chan error, 1)
			go func() { served <- loopback.ServeHTTP(ctx, ln, h, stop) }()

			client := &http.Client{Transport: &http.Transport{Proxy: nil}}
			defer client.CloseIdleConnections()
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "ok" {
				t.Errorf("answer %q, want ok", body)
			}
			if how == "ctx" {
				go func() {
					if resp, err := client.Get("http://" + addr + "/hang"); err == nil {
						resp.Body.Close()
					}
				}()
				select {
				case <-reached:
				case <-time.After(10 * time.Second):
					t.Fatal("the hanging request did not reach the handler")
				}
				cancel()
				select {
				case err := <-hung:
					if !errors.Is(err, context.Canceled) {
						t.Errorf("the hanging request's context ended with %v, want context.Canceled", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the hanging request did not end with ctx")
				}
			} else {
				close(stop)
			}
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("ServeHTTP = %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("ServeHTTP did not return")
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Errorf("%s still accepts connections after ServeHTTP returned", addr)
			}
		})
	}
}

// TestServeHTTPFails returns the error of a listener that fails.
func TestServeHTTPFails(t *testing.T) {
	ln, err := loopback.Listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = loopback.ServeHTTP(t.Context(), ln, http.NotFoundHandler(), nil)
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Errorf("ServeHTTP on a closed listener = %v, want net.ErrClosed", err)
	}
}

// TestWait runs the fault waits on a fake clock: a latency passes in
// full, and not longer; ctx or stop cut it short; a hang lasts until one
// of them, and never lets the request go on.
func TestWait(t *testing.T) {
	type result struct {
		ok   bool
		took time.Duration
	}
	run := func(t *testing.T, latency time.Duration, hang bool, end func(cancel context.CancelFunc, stop chan struct{})) result {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		stop := make(chan struct{})
		if end != nil {
			go func() {
				time.Sleep(3 * time.Second)
				end(cancel, stop)
			}()
		}
		begin := time.Now()
		ok := loopback.Wait(ctx, stop, latency, hang)
		return result{ok, time.Since(begin)}
	}
	cancelCtx := func(cancel context.CancelFunc, _ chan struct{}) { cancel() }
	closeStop := func(_ context.CancelFunc, stop chan struct{}) { close(stop) }
	cases := []struct {
		name    string
		latency time.Duration
		hang    bool
		end     func(context.CancelFunc, chan struct{})
		want    result
	}{
		{"nothing", 0, false, nil, result{true, 0}},
		{"latency", 2 * time.Second, false, nil, result{true, 2 * time.Second}},
		{"latency cut by ctx", 5 * time.Second, false, cancelCtx, result{false, 3 * time.Second}},
		{"latency cut by stop", 5 * time.Second, false, closeStop, result{false, 3 * time.Second}},
		{"hang until ctx", 0, true, cancelCtx, result{false, 3 * time.Second}},
		{"hang until stop", 0, true, closeStop, result{false, 3 * time.Second}},
		{"latency then hang", time.Second, true, closeStop, result{false, 3 * time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				if got := run(t, tc.latency, tc.hang, tc.end); got != tc.want {
					t.Errorf("Wait = %v after %v, want %v after %v", got.ok, got.took, tc.want.ok, tc.want.took)
				}
			})
		})
	}
}

// TestSwitch takes a server down and up again: the address stays, a
// connection while down is refused, and one after Up is served; Close
// makes Up fail and leaves no goroutine (goleak checks).
func TestSwitch(t *testing.T) {
	var mu sync.Mutex
	runs := 0
	sw := loopback.NewSwitch(func(ln net.Listener) func() {
		mu.Lock()
		runs++
		mu.Unlock()
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
		return loopback.Go(ln, hs.Serve, func() { hs.Close() })
	})
	if sw.Addr() != "" || sw.IsUp() {
		t.Fatalf("before Start: Addr %q, IsUp %v", sw.Addr(), sw.IsUp())
	}
	if err := sw.Up(t.Context()); !errors.Is(err, loopback.ErrNotStarted) {
		t.Errorf("Up before Start = %v, want ErrNotStarted", err)
	}
	if err := sw.Start(t.Context(), "10.0.0.1:0"); !errors.Is(err, loopback.ErrNotLoopback) {
		t.Errorf("Start(10.0.0.1:0) = %v, want ErrNotLoopback", err)
	}
	if err := sw.Start(t.Context(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	addr := sw.Addr()
	if err := sw.Start(t.Context(), "127.0.0.1:0"); !errors.Is(err, loopback.ErrStarted) {
		t.Errorf("second Start = %v, want ErrStarted", err)
	}
	get := func() error {
		c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("GET while up: %v", err)
	}
	if !sw.Down() {
		t.Error("Down on a server that was up reported false")
	}
	if sw.Down() {
		t.Error("a second Down reported true")
	}
	if err := get(); err == nil {
		t.Error("GET while down succeeded")
	}
	if sw.IsUp() || sw.Addr() != addr {
		t.Errorf("while down: IsUp %v, Addr %q (want %q)", sw.IsUp(), sw.Addr(), addr)
	}
	if err := sw.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := sw.Up(t.Context()); err != nil {
		t.Errorf("Up on a server that is up = %v", err)
	}
	if err := get(); err != nil {
		t.Errorf("GET after Up: %v", err)
	}
	if sw.Addr() != addr || !sw.IsUp() {
		t.Errorf("after Up: IsUp %v, Addr %q (want %q)", sw.IsUp(), sw.Addr(), addr)
	}
	sw.Close()
	sw.Close()
	if err := sw.Up(t.Context()); !errors.Is(err, loopback.ErrClosed) {
		t.Errorf("Up after Close = %v, want ErrClosed", err)
	}
	if err := sw.Start(t.Context(), "127.0.0.1:0"); !errors.Is(err, loopback.ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	if err := get(); err == nil {
		t.Error("GET after Close succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if runs != 2 {
		t.Errorf("the server ran %d times, want 2 (Start, Up)", runs)
	}
}

func TestFaults(t *testing.T) {
	type fault struct{ code int }
	tab := loopback.NewFaults[string, fault]("*")
	if _, ok := tab.Take("Get"); ok {
		t.Fatal("an empty table has a fault")
	}
	tab.Set("Get", fault{1}, 2)
	tab.Set("*", fault{9}, 0)
	var got []int
	for range 4 {
		f, ok := tab.Take("Get")
		if !ok {
			t.Fatal("no fault, want Get's or the wildcard's")
		}
		got = append(got, f.code)
	}
	if want := []int{1, 1, 9, 9}; !slices.Equal(got, want) {
		t.Errorf("Get's faults = %v, want %v (two of its own, then the wildcard's)", got, want)
	}
	if f, ok := tab.Take("Put"); !ok || f.code != 9 {
		t.Errorf("Put's fault = %v, %v; want the wildcard's", f, ok)
	}
	tab.Set("Put", fault{2}, 1)
	tab.Set("Put", fault{3}, -1) // replaces, unlimited
	for range 3 {
		if f, _ := tab.Take("Put"); f.code != 3 {
			t.Errorf("Put's fault = %v, want the replacement", f)
		}
	}
	tab.Clear()
	if _, ok := tab.Take("Put"); ok {
		t.Error("a fault is left after Clear")
	}
	var zero loopback.Faults[struct{}, fault]
	zero.Set(struct{}{}, fault{4}, 1)
	if f, ok := zero.Take(struct{}{}); !ok || f.code != 4 {
		t.Errorf("zero table: %v, %v", f, ok)
	}
	if _, ok := zero.Take(struct{}{}); ok {
		t.Error("zero table: the fault outlived its count")
	}
}

func TestCalls(t *testing.T) {
	var c loopback.Calls[string]
	if c.Of("Get") != 0 || c.Total() != 0 {
		t.Fatal("zero Calls is not empty")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Add("Get")
			}
			c.Add("Put")
			c.AddOther()
		})
	}
	wg.Wait()
	if c.Of("Get") != 800 || c.Of("Put") != 8 || c.Of("Delete") != 0 || c.Total() != 816 {
		t.Errorf("Get %d, Put %d, Delete %d, total %d; want 800, 8, 0, 816", c.Of("Get"), c.Of("Put"), c.Of("Delete"), c.Total())
	}
	c.Reset()
	if c.Of("Get") != 0 || c.Total() != 0 {
		t.Errorf("after Reset: Get %d, total %d", c.Of("Get"), c.Total())
	}
}
