#!/usr/bin/perl
# Writes a small GeoLite2-Country-shaped database for the tests:
#   write_database.pl OUT.mmdb NETWORK=ISO:Name ...   e.g. 10.201.0.2/32=DE:Germany
# Needs Debian's libmaxmind-db-writer-perl.
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my $out = shift @ARGV or die "usage: $0 OUT.mmdb NETWORK=ISO:Name ...\n";
my %types = (
    country => 'map', registered_country => 'map',
    iso_code => 'utf8_string', names => 'map', en => 'utf8_string',
);
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version => 6,
    record_size => 24,
    database_type => 'GeoLite2-Country',
    languages => ['en'],
    description => { en => 'netgraph test database' },
    map_key_type_callback => sub { $types{ $_[0] } },
    remove_reserved_networks => 0,
    alias_ipv6_to_ipv4 => 1,
);
for my $entry (@ARGV) {
    my ($network, $iso, $name) = $entry =~ /^([^=]+)=([A-Z]{2}):(.+)$/
        or die "bad entry $entry: expected NETWORK=ISO:Name\n";
    $tree->insert_network($network,
        { country => { iso_code => $iso, names => { en => $name } } });
}
open my $fh, '>:raw', $out or die "cannot write $out: $!\n";
$tree->write_tree($fh);
close $fh or die "cannot write $out: $!\n";
