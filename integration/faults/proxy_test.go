package faults

import (
	"io"
	"net"
	"sync"
	"testing"
)

// stallingProxy is a TCP proxy in front of a server that forwards the first
// connections it accepts and then stops answering: it accepts the later
// ones and never sends a byte, as a proxy or load balancer whose backend
// hangs does. It is stopped when the test ends.
type stallingProxy struct {
	ln      net.Listener
	target  string
	forward int // how many connections to forward

	wg sync.WaitGroup // the accept loop and the copying goroutines

	mu       sync.Mutex // guards the fields below
	accepted int
	stalled  int
	conns    []net.Conn // every connection opened, to close at Stop
	stopped  bool
}

// startStallingProxy starts a proxy on 127.0.0.1 that forwards its first
// forward connections to target (host:port).
func startStallingProxy(t *testing.T, target string, forward int) *stallingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallingProxy{ln: ln, target: target, forward: forward}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.stop)
	return p
}

// port is the port the proxy listens on.
func (p *stallingProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// counts returns how many connections the proxy accepted and how many of
// them it left unanswered.
func (p *stallingProxy) counts() (accepted, stalled int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.stalled
}

func (p *stallingProxy) acceptLoop() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed by stop
		}
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			_ = client.Close()
			return
		}
		p.accepted++
		p.conns = append(p.conns, client)
		forward := p.accepted <= p.forward
		if !forward {
			p.stalled++
		}
		p.mu.Unlock()
		if forward {
			p.wg.Go(func() { p.pipe(client) })
		}
	}
}

// pipe forwards client to the target until either side closes.
func (p *stallingProxy) pipe(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		_ = server.Close()
		return
	}
	p.conns = append(p.conns, server)
	p.mu.Unlock()
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = client.Close()
			_ = server.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(server, client); closeBoth() })
	wg.Go(func() { _, _ = io.Copy(client, server); closeBoth() })
	wg.Wait()
}

// stop closes the listener and every connection, and waits for the
// proxy's goroutines.
func (p *stallingProxy) stop() {
	p.mu.Lock()
	p.stopped = true
	conns := p.conns
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	p.wg.Wait()
}
